import sys

from vwwtorch.cli import main

sys.exit(main())
