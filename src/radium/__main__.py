"""``python -m radium`` runs the ``rad`` command line."""

from radium.cli import main

main()
