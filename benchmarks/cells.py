"""bptt layers against torch.nn.RNN/LSTM/GRU on the CPU; see ``bptt.bench`` (``--help``)."""

import sys

from bptt.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
