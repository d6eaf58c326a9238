"""python -m pictrace.cli"""

import sys

from pictrace.cli.main import main

sys.exit(main())
