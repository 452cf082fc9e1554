"""Who answers a message. Now: the room binding; the full chain comes next."""
