"""Stand-ins for tests and CI without a phone: an adbd-compatible server and runner look-alikes."""
