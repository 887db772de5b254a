"""kafkatrail's trails: the trail model, its validation against CloudTrail's rules, and trail definition files."""
