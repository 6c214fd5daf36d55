package testenv

import "crypto/tls"

// insecureTLS is only for the readiness probe of a loopback API server whose
// self-signed certificate is not written yet when probing starts.
func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } //nolint:gosec // loopback probe
