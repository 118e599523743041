"""``python -m imitlib.train --spec run.json`` (also the module ``accelerate launch -m`` runs)."""

from imitlib.train.launch import main

if __name__ == "__main__":
    main()
