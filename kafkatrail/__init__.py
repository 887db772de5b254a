"""kafkatrail's control plane: typed settings, the `kafkatrail` CLI and the local stack launcher."""
