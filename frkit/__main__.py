import sys

from frkit.cli import main

sys.exit(main())
