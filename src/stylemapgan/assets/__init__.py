"""Files shipped inside the package: the bundled models (and their sample faces), found without a network."""
