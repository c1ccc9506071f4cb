import sys

from cds.cli import main

sys.exit(main())
