import sys

from adambnn_larq.cli import main

sys.exit(main())
