"""Entry script of the frozen executable."""

import sys

from appliance.cli import main

if __name__ == "__main__":
    sys.exit(main())
