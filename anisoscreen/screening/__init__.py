"""The screening campaign: jobs, Makers, typed stage outputs, descriptors and bonding."""
