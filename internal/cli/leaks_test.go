package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"html"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prox-ops/drover/internal/secrets"
)

// droverEnv runs the CLI in-process with env as its environment.
func droverEnv(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	s := testStreams(t, &out, &errb)
	s.Getenv = func(k string) string { return env[k] }
	code := Run(context.Background(), s, args)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// forms are the ways a value could leak: as it is, JSON-escaped (with
// and without HTML escaping), HTML-escaped, base64.
func leakForms(v string) []string {
	j, _ := json.Marshal(v)
	var nb bytes.Buffer
	enc := json.NewEncoder(&nb)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return []string{v, strings.Trim(string(j), `"`), strings.Trim(strings.TrimSpace(nb.String()), `"`), html.EscapeString(v),
		base64.StdEncoding.EncodeToString([]byte(v))}
}

// TestASecretWithJSONSpecialsInTheConfig: a secret that is also in
// drover.yaml (the cluster's name) and has <, & and a quote in it reaches
// neither the console nor the journal nor the report in any form: the
// journal masks before it encodes, the report by string values.
func TestASecretWithJSONSpecialsInTheConfig(t *testing.T) {
	const secret = `pr<ox>&"ops-s3cret`
	dir := t.TempDir()
	data, err := os.ReadFile(exampleConfig)
	must(t, err)
	cfg := filepath.Join(dir, "drover.yaml")
	must(t, os.WriteFile(cfg, []byte(strings.Replace(string(data), "name: prox-ops", `name: 'pr<ox>&"ops-s3cret'`, 1)), 0o644))
	j, rep := filepath.Join(dir, "j.jsonl"), filepath.Join(dir, "report.json")
	r := droverEnv(t, map[string]string{"AWS_SECRET_ACCESS_KEY": secret}, "upgrade", "--lab", "--config", cfg, "--to-talos", "v1.11.4", "--yes",
		"--journal", j, "--report", rep, "--output", "json")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, lastLines(r.stderr, 5))
	}
	jb, _ := os.ReadFile(j)
	rb, _ := os.ReadFile(rep)
	for name, text := range map[string]string{"stdout": r.stdout, "stderr": r.stderr, "journal": string(jb), "report": string(rb)} {
		for _, f := range leakForms(secret) {
			if strings.Contains(text, f) {
				t.Errorf("%s carries the secret as %q", name, f)
			}
		}
	}
	if !strings.Contains(string(jb), `"cluster":"***"`) {
		t.Errorf("the journal's header does not carry the masked name: the case was not exercised\n%s", lastLines(string(jb), 2))
	}
}

// TestAShortSecretBreaksNothing: AWS_SECRET_ACCESS_KEY=true and a
// secret that is a step's name ("drain") are masked only where they stand
// alone: the JSON output and report stay valid with their literals, the
// journal keeps its steps and resumes, and drover warns that such values
// are too short to mask safely.
func TestAShortSecretBreaksNothing(t *testing.T) {
	dir := t.TempDir()
	j, rep, state := filepath.Join(dir, "j.jsonl"), filepath.Join(dir, "report.json"), filepath.Join(dir, "lab.json")
	env := map[string]string{"AWS_SECRET_ACCESS_KEY": "true", "PROXMOX_PASSWORD": "drain"}
	r := droverEnv(t, env, "upgrade", "--lab", "--lab-state", state, "--to-talos", "v1.12.0", "--yes", "--canary", "1",
		"--journal", j, "--report", rep, "--output", "json")
	if r.code != ExitCanary {
		t.Fatalf("exit %d\n%s", r.code, lastLines(r.stderr, 5))
	}
	for _, name := range []string{"AWS_SECRET_ACCESS_KEY", "PROXMOX_PASSWORD"} {
		if !strings.Contains(r.stderr, "warning: the secret "+name+" is shorter than 8 characters") {
			t.Errorf("no warning about %s:\n%s", name, lastLines(r.stderr, 20))
		}
	}
	rb, _ := os.ReadFile(rep)
	for name, doc := range map[string]string{"stdout": r.stdout, "report": string(rb)} {
		var v map[string]any
		if err := json.Unmarshal([]byte(doc), &v); err != nil {
			t.Fatalf("%s is no longer JSON: %v\n%s", name, err, doc)
		}
		if !strings.Contains(doc, `"approvalRequired": false`) && !strings.Contains(doc, `: true`) {
			t.Errorf("%s lost its literals", name)
		}
	}
	jb, _ := os.ReadFile(j)
	if !strings.Contains(string(jb), `"step":"drain"`) {
		t.Errorf("the journal lost its drain steps:\n%s", lastLines(string(jb), 5))
	}
	r = droverEnv(t, env, "upgrade", "--lab", "--lab-state", state, "--to-talos", "v1.12.0", "--yes", "--resume", "--journal", j, "--output", "json")
	if r.code != ExitOK && r.code != ExitHandedOff {
		t.Fatalf("the journal no longer resumes: exit %d\n%s", r.code, lastLines(r.stderr, 5))
	}
}

// TestCredentialsInConfiguredURLs: a Pushgateway URL with user:password@
// in drover.yaml gets a warning, and its password appears nowhere, though
// the push fails and says so; the same URL from the environment
// (metrics.pushgatewayEnv) gets no warning.
func TestCredentialsInConfiguredURLs(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	closed := l.Addr().String()
	must(t, l.Close()) // nothing listens: every push fails
	const password = "pushgw-pa55word"
	pg := "http://drover:" + password + "@" + closed
	dir := t.TempDir()
	data, err := os.ReadFile(exampleConfig)
	must(t, err)
	for _, tc := range []struct {
		name, yaml string
		env        map[string]string
		warn       bool
	}{
		{"in drover.yaml", "  pushgateway: " + pg, nil, true},
		{"from the environment", "  pushgatewayEnv: DROVER_PUSHGATEWAY_URL", map[string]string{"DROVER_PUSHGATEWAY_URL": pg}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			must(t, os.WriteFile(cfg, []byte(strings.Replace(string(data), `  pushgateway: ""`, tc.yaml, 1)), 0o644))
			rep := filepath.Join(dir, tc.name+".json")
			r := droverEnv(t, tc.env, "upgrade", "--lab", "--config", cfg, "--to-talos", "v1.11.4", "--yes", "--only", "k8s-work-1", "--report", rep)
			if r.code != ExitOK {
				t.Fatalf("exit %d\n%s", r.code, lastLines(r.stderr, 8))
			}
			if got := strings.Contains(r.stderr, "metrics.pushgateway has credentials in it"); got != tc.warn {
				t.Errorf("warning shown %v, want %v:\n%s", got, tc.warn, lastLines(r.stderr, 20))
			}
			if !strings.Contains(r.stdout+r.stderr, "push to the Pushgateway failed") {
				t.Errorf("the failed push is not reported: the case was not exercised\n%s", lastLines(r.stderr, 20))
			}
			rb, _ := os.ReadFile(rep)
			u, _ := url.Parse(pg)
			for name, text := range map[string]string{"stdout": r.stdout, "stderr": r.stderr, "report": string(rb)} {
				for _, f := range append(leakForms(password), u.Redacted(), "drover:"+password) {
					if strings.Contains(text, f) {
						t.Errorf("%s carries %q", name, f)
					}
				}
			}
		})
	}
	// An unset variable is a configuration error naming it: exit 2.
	cfg := filepath.Join(dir, "unset.yaml")
	must(t, os.WriteFile(cfg, []byte(strings.Replace(string(data), `  pushgateway: ""`, "  pushgatewayEnv: DROVER_PUSHGATEWAY_URL", 1)), 0o644))
	if r := droverEnv(t, nil, "plan", "--lab", "--config", cfg, "--to-talos", "v1.11.4"); r.code != ExitUsage || !strings.Contains(r.stderr, "metrics.pushgatewayEnv: the environment variable DROVER_PUSHGATEWAY_URL is not set") {
		t.Errorf("exit %d\n%s", r.code, r.stderr)
	}
}

// TestAWebhookThatEchoesItsURL: a Discord webhook URL with a userinfo
// part, answering 400 with the URL in its body, leaks none of its token
// or password, in Go's redacted form or any other.
func TestAWebhookThatEchoesItsURL(t *testing.T) {
	const token = "T0KEN-abcdefghijklmnopqrstuvwxyz0123456789"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"message": "Invalid Webhook Token", "url": "` + r.URL.String() + `", "host": "` + r.Host + `"}`))
	}))
	defer srv.Close()
	hook := strings.Replace(srv.URL, "http://", "http://bot:hook-pa55word@", 1) + "/api/webhooks/1234567890123/" + token
	rep := filepath.Join(t.TempDir(), "report.json")
	r := droverEnv(t, map[string]string{"DISCORD_WEBHOOK_URL": hook}, "upgrade", "--lab", "--to-talos", "v1.11.4", "--yes", "--only", "k8s-work-1", "--report", rep)
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, lastLines(r.stderr, 8))
	}
	if !strings.Contains(r.stdout+r.stderr, "not delivered") {
		t.Fatalf("the failed delivery is not reported: the case was not exercised\n%s", lastLines(r.stderr, 20))
	}
	rb, _ := os.ReadFile(rep)
	u, _ := url.Parse(hook)
	for name, text := range map[string]string{"stdout": r.stdout, "stderr": r.stderr, "report": string(rb)} {
		for _, f := range []string{token, "hook-pa55word", u.Redacted(), "/api/webhooks/1234567890123/T0KEN"} {
			if strings.Contains(text, f) {
				t.Errorf("%s carries %q", name, f)
			}
		}
	}
}

// TestSecretsCheckPrintsNothingOfAValue: a base64 talosconfig's context
// name is part of the secret; a value that is a word of its own hint
// does not turn the hint into ***.
func TestSecretsCheckPrintsNothingOfAValue(t *testing.T) {
	const ctxName = "prox-ops-admin-ctx-77"
	tc := "context: " + ctxName + "\ncontexts:\n  " + ctxName + ":\n    endpoints: []\n"
	env := map[string]string{"TALOSCONFIG": base64.StdEncoding.EncodeToString([]byte(tc)), "AWS_SECRET_ACCESS_KEY": "least"}
	r := droverEnv(t, env, "secrets", "check")
	if r.code != ExitHalted {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, ctxName) || !strings.Contains(r.stdout, "its current context has no endpoints") {
		t.Errorf("the talosconfig's line:\n%s", r.stdout)
	}
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(line, "AWS_SECRET_ACCESS_KEY") && (strings.Contains(line, secrets.Mask) || !strings.Contains(line, "MALFORMED")) {
			t.Errorf("the hint shows ***: %s", line)
		}
	}
}
