"""Authentication, authorization and TLS material."""
