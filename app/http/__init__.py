"""HTTP hardening and plumbing: connection limits, middleware, body parsing, error rendering, responses."""
