"""`python -m tflm_vmcu ...`: the command line (e.g. `python -m tflm_vmcu --cmake-dir`)."""

import sys

from .cli import main

sys.exit(main())
