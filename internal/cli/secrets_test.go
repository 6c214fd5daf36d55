package cli

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"

	sidero "github.com/siderolabs/crypto/x509"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
)

// goodSecrets is one well-formed value for each of the kit's secrets.
func goodSecrets(t *testing.T) map[string]string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	tc := clientconfig.NewConfig("prox-ops", []string{"127.0.0.1"}, []byte("ca-pem"),
		&sidero.PEMEncodedCertificateAndKey{Crt: []byte("crt-pem"), Key: []byte("key-pem")})
	raw, err := tc.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"PROXMOX_USERNAME":       "terraform@pve!drover",
		"PROXMOX_PASSWORD":       "0c7e5d1e-9e1f-4a39-bb55-secretvalue",
		"AWS_ACCESS_KEY_ID":      "AKIAEXAMPLEKEYID",
		"AWS_SECRET_ACCESS_KEY":  "wJalrXUtnFEMI-secret-access-key",
		"TALOSCONFIG":            base64.StdEncoding.EncodeToString(raw),
		"DISCORD_WEBHOOK_URL":    "https://discord.com/api/webhooks/123456/tokenvalue-abc",
		"GH_APP_ID":              "123456",
		"GH_APP_INSTALLATION_ID": "7890123",
		"GH_APP_PRIVATE_KEY":     pemKey,
	}
}

func TestSecretsCheck(t *testing.T) {
	tests := []struct {
		name     string
		change   map[string]string
		wantCode int
		want     []string
	}{
		{"all nine good", nil, ExitOK, []string{"PROXMOX_USERNAME", "GH_APP_PRIVATE_KEY"}},
		{"one missing", map[string]string{"AWS_SECRET_ACCESS_KEY": ""}, ExitHalted, []string{"AWS_SECRET_ACCESS_KEY", "MISSING", "not set"}},
		{"a Proxmox user without a realm", map[string]string{"PROXMOX_USERNAME": "terraform"}, ExitHalted, []string{"MALFORMED", "USER@REALM"}},
		{"a talosconfig not in base64", map[string]string{"TALOSCONFIG": "context: prox-ops\n"}, ExitHalted, []string{"base64 -w0"}},
		{"a talosconfig that is not one", map[string]string{"TALOSCONFIG": base64.StdEncoding.EncodeToString([]byte("[1, 2"))}, ExitHalted, []string{"not a talosconfig"}},
		{"a webhook that is not Discord's", map[string]string{"DISCORD_WEBHOOK_URL": "http://example.invalid/hook"}, ExitHalted, []string{"discord.com/api/webhooks"}},
		{"an app id that is not a number", map[string]string{"GH_APP_ID": "my-app"}, ExitHalted, []string{"want a number"}},
		{"a private key that is a certificate", map[string]string{"GH_APP_PRIVATE_KEY": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, ExitHalted, []string{"not a private key"}},
	}
	for _, tc := range tests {
		for _, format := range []string{"table", "markdown"} {
			t.Run(tc.name+"/"+format, func(t *testing.T) {
				env := goodSecrets(t)
				for k, v := range tc.change {
					env[k] = v
				}
				var out, errb bytes.Buffer
				s := testStreams(t, &out, &errb)
				s.Getenv = func(k string) string { return env[k] }
				code := Run(t.Context(), s, []string{"secrets", "check", "--output", format})
				if code != tc.wantCode {
					t.Fatalf("exit %d, want %d\n%s%s", code, tc.wantCode, out.String(), errb.String())
				}
				for _, w := range tc.want {
					if !strings.Contains(out.String(), w) {
						t.Errorf("output lacks %q:\n%s", w, out.String())
					}
				}
				if format == "markdown" && !strings.HasPrefix(out.String(), "### drover secrets: ") {
					t.Errorf("markdown output:\n%s", out.String())
				}
				// Nothing of any value reaches any stream, good or bad.
				for k, v := range env {
					for _, part := range []string{v, strings.SplitN(v, "\n", 2)[0]} {
						if len(part) >= 6 && k != "GH_APP_ID" && k != "GH_APP_INSTALLATION_ID" && strings.Contains(out.String()+errb.String(), part) && !strings.HasPrefix(part, "-----") {
							t.Errorf("the value of %s appears in the output", k)
						}
					}
				}
			})
		}
	}
}
