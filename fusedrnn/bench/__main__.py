import sys

from fusedrnn.bench import main

sys.exit(main())
