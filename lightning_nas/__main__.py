import sys

from lightning_nas.cli import main

sys.exit(main())
