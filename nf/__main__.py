import sys

from nf.cli import main

sys.exit(main())
