package config

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/prometheus/alertmanager/pkg/labels"
	"gopkg.in/yaml.v3"
	k8slabels "k8s.io/apimachinery/pkg/labels"

	"github.com/prox-ops/drover/internal/celcheck"
	"github.com/prox-ops/drover/internal/version"
)

// Problem is one thing wrong in a configuration file.
type Problem struct {
	// Field is the dotted path of the field, such as "nodes[3].role".
	Field string
	// Line is the 1-based line in the file, 0 when unknown.
	Line int
	Msg  string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error is an invalid configuration. The CLI maps it to exit code 2.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return fmt.Sprintf("invalid configuration %s: %s", e.File, e.Problems[0])
	}
	var b strings.Builder
	fmt.Fprintf(&b, "invalid configuration %s: %d problems:", e.File, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  - " + p.String())
	}
	return b.String()
}

var (
	nodeNameRE     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	variableNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)
	factoryPathRE  = regexp.MustCompile(`^[a-z0-9-]+-installer/[0-9a-f]{64}$`)
	yamlLineRE     = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownFieldRE = regexp.MustCompile(`^field (\S+) not found in type (\S+)$`)
	typeErrorRE    = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: (`.*`))? into (\\S+)$")
	bucketRE       = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
)

// InstallerPlaceholder is replaced by the target version in Talos.InstallerImage.
const InstallerPlaceholder = "{version}"

// validate checks every field, in the order of the schema.
//
//nolint:gocyclo,funlen // a flat list of one check per field: split, the schema would be scattered
func (c *Config) validate(lines map[string]int) []Problem {
	var probs []Problem
	add := func(field, format string, args ...any) {
		probs = append(probs, Problem{Field: field, Line: lineOf(lines, field), Msg: fmt.Sprintf(format, args...)})
	}
	urlEnv := func(field, name, urlField, url string) {
		switch {
		case name == "":
		case url != "":
			add(field, "set either %s or %s, not both", urlField, field)
		case !variableNameRE.MatchString(name):
			add(field, "%q is not an environment variable name", name)
		}
	}

	if strings.TrimSpace(c.Cluster.Name) == "" {
		add("cluster.name", "is required")
	}
	if len(c.Nodes) == 0 {
		add("nodes", "at least one node is required")
	}
	seen := map[string]int{}
	seenIP := map[string]int{}
	seenVM := map[int]int{}
	cp := 0
	for i, n := range c.Nodes {
		f := fmt.Sprintf("nodes[%d]", i)
		switch {
		case n.Name == "":
			add(f+".name", "is required")
		case !nodeNameRE.MatchString(n.Name):
			add(f+".name", "%q is not a valid node name (lowercase letters, digits and '-')", n.Name)
		default:
			if j, dup := seen[n.Name]; dup {
				add(f+".name", "duplicate node name %q (also nodes[%d])", n.Name, j)
			} else {
				seen[n.Name] = i
			}
		}
		switch n.Role {
		case RoleControlPlane:
			cp++
		case RoleWorker:
		case "":
			add(f+".role", "is required (controlplane or worker)")
		default:
			add(f+".role", "unknown role %q; want controlplane or worker", n.Role)
		}
		if n.IP == "" {
			add(f+".ip", "is required")
		} else if _, err := netip.ParseAddr(n.IP); err != nil {
			add(f+".ip", "%q is not an IP address", n.IP)
		} else if j, dup := seenIP[n.IP]; dup {
			add(f+".ip", "duplicate IP %s (also nodes[%d])", n.IP, j)
		} else {
			seenIP[n.IP] = i
		}
		if n.VMID < 0 {
			add(f+".vmId", "must not be negative, got %d", n.VMID)
		} else if n.VMID > 0 {
			if j, dup := seenVM[n.VMID]; dup {
				add(f+".vmId", "duplicate VM id %d (also nodes[%d])", n.VMID, j)
			} else {
				seenVM[n.VMID] = i
			}
		}
		if n.GPUs < 0 {
			add(f+".gpus", "must be 0 or more, got %d", n.GPUs)
		}
	}
	if len(c.Nodes) > 0 {
		switch {
		case cp == 0:
			add("nodes", "no control-plane node: etcd needs an odd number (1, 3, 5) of control-plane nodes")
		case cp%2 == 0:
			add("nodes", "%d control-plane nodes: etcd needs an odd number (1, 3, 5) to keep quorum through an upgrade", cp)
		}
	}

	if !variableNameRE.MatchString(c.Versions.TalosVariable) {
		add("versions.talosVariable", "%q is not a Terraform variable name", c.Versions.TalosVariable)
	}
	if !variableNameRE.MatchString(c.Versions.KubernetesVariable) {
		add("versions.kubernetesVariable", "%q is not a Terraform variable name", c.Versions.KubernetesVariable)
	}
	if c.Versions.VariablesFile == "" {
		add("versions.variablesFile", "is required")
	}

	if img := c.Talos.InstallerImage; img != "" {
		if err := checkInstallerImage(img); err != nil {
			add("talos.installerImage", "%v", err)
		}
	}

	for i, im := range c.Talos.InstallerImages {
		field := fmt.Sprintf("talos.installerImages[%d]", i)
		if err := checkInstallerImage(im.Image); err != nil {
			add(field+".image", "%v", err)
		}
		if len(im.Nodes) == 0 && len(im.Selector) == 0 {
			add(field, "names no node: set nodes (names) or selector (Node labels)")
		}
		for _, n := range im.Nodes {
			if _, ok := c.NodeByName(n); !ok {
				add(field+".nodes", "%q is not a node of the inventory", n)
			}
		}
	}
	for i, r := range c.Talos.EtcdSnapshotRecipients {
		field := fmt.Sprintf("talos.etcdSnapshotRecipients[%d]", i)
		switch {
		case strings.HasPrefix(strings.ToUpper(strings.TrimSpace(r)), "AGE-SECRET-KEY-"):
			// Never echo it: it is a private key, in a file in Git.
			add(field, "is an age identity (a private key): put its public key (age1...) here, keep the identity out of the repository, and rotate it now")
		default:
			if _, err := age.ParseX25519Recipient(strings.TrimSpace(r)); err != nil {
				add(field, "%q is not an age public key (age1...): %v", r, err)
			}
		}
	}
	if c.Talos.EtcdSnapshotsKeep < 1 {
		add("talos.etcdSnapshotsKeep", "must be at least 1, got %d", c.Talos.EtcdSnapshotsKeep)
	}
	if up := c.Talos.EtcdSnapshotUpload; up.URL != "" || up.Endpoint != "" {
		if !strings.HasPrefix(up.URL, "s3://") || !bucketRE.MatchString(up.Bucket()) {
			add("talos.etcdSnapshotUpload.url", "%q: want s3://BUCKET/PREFIX with a bucket name of 3-63 lowercase letters, digits, '.' and '-'", up.URL)
		}
		if up.Endpoint != "" {
			if u, err := url.Parse(up.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
				add("talos.etcdSnapshotUpload.endpoint", "%q: want the S3 API's URL, such as https://s3.example.net", RedactURL(up.Endpoint))
			}
		}
	}
	r := &c.Rollout
	if r.MaxSoaking < 0 {
		add("rollout.maxSoaking", "must be 0 (no limit) or more, got %d", r.MaxSoaking)
	}
	if r.MaxParallelWorkers < 1 {
		add("rollout.maxParallelWorkers", "must be at least 1, got %d", r.MaxParallelWorkers)
	}
	if u := c.Metrics.Pushgateway; u != "" {
		if !httpURL(u) {
			add("metrics.pushgateway", "%q: want the Pushgateway's http(s) URL, such as http://pushgateway.monitoring:9091", RedactURL(u))
		}
	}
	for i, sel := range r.BlockingPods {
		if _, err := k8slabels.Parse(sel); err != nil || strings.TrimSpace(sel) == "" {
			add(fmt.Sprintf("rollout.blockingPods[%d]", i), "%q: want a label selector such as app=transcoder or job-name in (backup) (%v)", sel, err)
		}
	}
	if c.Journal.KeepRuns < 0 {
		add("journal.keepRuns", "must be 0 (the default, 20) or more, got %d", c.Journal.KeepRuns)
	}
	if k := c.KubeClient; k.QPS < 0 || k.Burst < 0 || k.RequestTimeout.Duration < 0 {
		add("kubeClient", "qps, burst and requestTimeout must not be negative")
	} else if k.QPS > 0 && k.Burst > 0 && float32(k.Burst) < k.QPS {
		add("kubeClient.burst", "%d is below qps %g: the burst must hold at least a second of requests", k.Burst, k.QPS)
	}
	urlEnv("metrics.pushgatewayEnv", c.Metrics.PushgatewayEnv, "metrics.pushgateway", c.Metrics.Pushgateway)
	urlEnv("health.alertmanager.urlEnv", c.Health.Alertmanager.URLEnv, "health.alertmanager.url", c.Health.Alertmanager.URL)
	for i, name := range r.Canary {
		field := fmt.Sprintf("rollout.canary[%d]", i)
		switch n, ok := c.NodeByName(name); {
		case !ok:
			add(field, "%q is not a node of the inventory", name)
		case n.IsControlPlane():
			add(field, "%q is a control-plane node; a canary is a worker", name)
		}
	}
	for _, c := range []struct {
		field string
		v     int
	}{{"rollout.healthAttempts", r.HealthAttempts}, {"rollout.healthPasses", r.HealthPasses}, {"rollout.drainAttempts", r.DrainAttempts}} {
		if c.v < 1 {
			add(c.field, "must be at least 1, got %d", c.v)
		}
	}
	durations := []struct {
		field    string
		d        *Duration
		positive bool
	}{
		{"rollout.drainTimeout", &r.DrainTimeout, true},
		{"rollout.readyTimeout", &r.ReadyTimeout, true},
		{"rollout.healthTimeout", &r.HealthTimeout, true},
		{"rollout.healthInterval", &r.HealthInterval, true},
		{"rollout.controlPlaneSoak", &r.ControlPlaneSoak, false},
		{"rollout.workerSoak", &r.WorkerSoak, false},
		{"rollout.volumeDetachTimeout", &r.VolumeDetachTimeout, false},
		{"rollout.blockingTimeout", &r.BlockingTimeout, false},
		{"rollout.stepDurations.drain", &r.StepDurations.Drain, false},
		{"rollout.stepDurations.destroy", &r.StepDurations.Destroy, false},
		{"rollout.stepDurations.create", &r.StepDurations.Create, false},
		{"rollout.stepDurations.upgrade", &r.StepDurations.Upgrade, false},
		{"rollout.stepDurations.template", &r.StepDurations.Template, false},
		{"rollout.stepDurations.health", &r.StepDurations.Health, false},
		{"rollout.stepDurations.kubernetes", &r.StepDurations.Kubernetes, false},
		{"terraform.lockTimeout", &c.Terraform.LockTimeout, false},
		{"health.pendingGrace", &c.Health.PendingGrace, true},
		{"health.checkTimeout", &c.Health.CheckTimeout, true},
		{"health.cephCheckInterval", &c.Health.CephCheckInterval, true},
	}
	for _, d := range durations {
		switch {
		case d.d.bad:
			probs = append(probs, Problem{Field: d.field, Line: d.d.line, Msg: fmt.Sprintf("%q is not a duration (use forms like 90s, 5m, 1h30m)", d.d.raw)})
		case d.d.Duration < 0:
			add(d.field, "must not be negative, got %s", d.d.Duration)
		case d.positive && d.d.Duration == 0:
			add(d.field, "must be greater than zero")
		}
	}

	if u := c.Health.Alertmanager.URL; u != "" {
		if !httpURL(u) {
			add("health.alertmanager.url", "%q is not an http(s) URL (such as http://alertmanager.monitoring:9093)", RedactURL(u))
		}
	}
	for _, m := range []struct {
		field string
		list  []string
	}{{"health.alertmanager.select", c.Health.Alertmanager.Select}, {"health.alertmanager.ignore", c.Health.Alertmanager.Ignore}, {"health.blockingAlerts", c.Health.BlockingAlerts}} {
		for i, s := range m.list {
			if _, err := labels.ParseMatcher(s); err != nil {
				add(fmt.Sprintf("%s[%d]", m.field, i), "%q is not an Alertmanager matcher (label=value, label!=value, label=~regex, label!~regex): %v", s, err)
			}
		}
	}
	if len(c.Health.BlockingAlerts) > 0 && c.Health.Alertmanager.URL == "" {
		add("health.blockingAlerts", "needs health.alertmanager.url")
	}
	c.validateSilencesAndHooks(add)
	tf := c.Terraform
	if tf.Templates != TemplatesKeep && tf.Templates != TemplatesRebuild {
		add("terraform.templates", "%q: want keep (one template per version, never destroyed) or rebuild (fixed template VM ids, replaced in place)", tf.Templates)
	}
	if !strings.Contains(tf.NodeAddress, "{name}") {
		add("terraform.nodeAddress", "%q must contain {name}, which drover replaces with the node name", tf.NodeAddress)
	}
	for i, n := range c.Nodes {
		if n.TerraformAddress != "" && strings.ContainsAny(n.TerraformAddress, " \t\n") {
			add(fmt.Sprintf("nodes[%d].terraformAddress", i), "%q is not a Terraform address", n.TerraformAddress)
		}
	}
	for i, e := range c.Secrets.Env {
		if !variableNameRE.MatchString(e) {
			add(fmt.Sprintf("secrets.env[%d]", i), "%q is not an environment variable name", e)
		}
	}
	for i, name := range c.Health.Disable {
		if !slices.Contains(BuiltinChecks, name) {
			add(fmt.Sprintf("health.disable[%d]", i), "unknown check %q; built-in checks are %s", name, strings.Join(BuiltinChecks, ", "))
		}
	}
	for field, msg := range c.MaintenanceWindow.problems() {
		add("maintenanceWindow."+field, "%s", msg)
	}
	seenCheck := map[string]bool{}
	for i, cc := range c.Health.Custom {
		f := fmt.Sprintf("health.custom[%d]", i)
		switch {
		case cc.Name == "":
			add(f+".name", "is required")
		case seenCheck[cc.Name]:
			add(f+".name", "duplicate check name %q", cc.Name)
		}
		seenCheck[cc.Name] = true
		if cc.APIVersion == "" || cc.Kind == "" {
			add(f, "apiVersion and kind are required")
		}
		if cc.Expression == "" {
			add(f+".expression", "is required")
		} else if err := CompileCEL(cc.Expression); err != nil {
			add(f+".expression", "%v", err)
		}
	}
	for i, v := range c.Approval.Versions {
		if _, err := version.Parse(v, true); err != nil {
			add(fmt.Sprintf("approval.versions[%d]", i), "%v", err)
		}
	}
	if c.Notifications.Discord.WebhookEnv != "" && !variableNameRE.MatchString(c.Notifications.Discord.WebhookEnv) {
		add("notifications.discord.webhookEnv", "%q is not an environment variable name", c.Notifications.Discord.WebhookEnv)
	}
	return probs
}

// checkInstallerImage checks the installer image template.
func checkInstallerImage(img string) error {
	if !strings.HasSuffix(img, ":"+InstallerPlaceholder) {
		return fmt.Errorf("%q must end with the tag %q, which drover replaces with the target version", img, ":"+InstallerPlaceholder)
	}
	repo := strings.TrimSuffix(img, ":"+InstallerPlaceholder)
	host, path, ok := strings.Cut(repo, "/")
	if !ok || host == "" || path == "" {
		return fmt.Errorf("%q is not an image reference (want factory.talos.dev/<platform>-installer/<schematic>:{version})", img)
	}
	if host == "factory.talos.dev" && !factoryPathRE.MatchString(path) {
		return fmt.Errorf("%q is not in Image Factory form factory.talos.dev/<platform>-installer/<schematic>:{version}, where the schematic id is 64 lowercase hex digits", img)
	}
	return nil
}

// Image returns the installer image for a Talos version.
func (t Talos) Image(v string) string {
	return strings.ReplaceAll(t.InstallerImage, InstallerPlaceholder, v)
}

func lineOf(lines map[string]int, field string) int {
	for f := field; f != ""; {
		if l, ok := lines[f]; ok {
			return l
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return 0
}

func yamlProblem(err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		l, _ := strconv.Atoi(m[1])
		return Problem{Line: l, Msg: m[2]}
	}
	return Problem{Msg: msg}
}

// yamlProblems turns decoding errors into problems; a value of the wrong
// type is named by its field, found from its line.
func yamlProblems(err error, lines map[string]int) []Problem {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []Problem{yamlProblem(err)}
	}
	probs := make([]Problem, 0, len(te.Errors))
	for _, e := range te.Errors {
		p := yamlProblem(errors.New(e))
		if m := unknownFieldRE.FindStringSubmatch(p.Msg); m != nil {
			p.Field = m[1]
			p.Msg = fmt.Sprintf("unknown field (in %s)", strings.TrimPrefix(m[2], "config."))
		} else if m := typeErrorRE.FindStringSubmatch(p.Msg); m != nil {
			p.Field = fieldAt(lines, p.Line, m[2] != "")
			what := m[2]
			if what == "" {
				what = map[string]string{"seq": "a list", "map": "a mapping"}[m[1]]
				if what == "" {
					what = "this value"
				}
			}
			p.Msg = fmt.Sprintf("%s is not %s", what, article(m[3]))
		}
		probs = append(probs, p)
	}
	return probs
}

// fieldAt is the field whose key (or item) is on line: the deepest one for
// a scalar value, the outermost for a list or mapping written inline.
func fieldAt(lines map[string]int, line int, scalar bool) string {
	best := ""
	for f, l := range lines {
		if l != line {
			continue
		}
		better := best == "" || len(f) == len(best) && f < best
		if scalar {
			better = better || len(f) > len(best)
		} else {
			better = better || len(f) < len(best)
		}
		if better {
			best = f
		}
	}
	return best
}

// article names a Go type for people: "int" -> "a whole number".
func article(goType string) string {
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case goType == "bool":
		return "true or false"
	case goType == "string", strings.HasSuffix(goType, ".Role"):
		return "a string"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["):
		return "a mapping"
	}
	return "a " + strings.TrimPrefix(goType, "config.")
}

// CompileCEL checks a custom check's expression.
func CompileCEL(expr string) error {
	_, err := celcheck.Compile(expr)
	return err
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// userinfoRE finds the credentials of a URL that may not parse.
var userinfoRE = regexp.MustCompile(`//[^/?#]*@`)

// RedactURL drops a URL's credentials (user:password@), for a message
// about it. It works on text that is not a valid URL too.
func RedactURL(s string) string {
	return userinfoRE.ReplaceAllString(s, "//***@")
}

// validateSilencesAndHooks checks health.alertmanager.silences and hooks.
func (c *Config) validateSilencesAndHooks(add func(field, format string, args ...any)) {
	am := c.Health.Alertmanager
	for i, s := range am.Silences {
		f := fmt.Sprintf("health.alertmanager.silences[%d]", i)
		m, err := labels.ParseMatcher(strings.ReplaceAll(s, "{node}", "k8s-node"))
		switch {
		case err != nil:
			add(f, "%q is not an Alertmanager matcher (label=value, label=~regex; {node} is the node's name): %v", s, err)
		case m.Type == labels.MatchNotEqual || m.Type == labels.MatchNotRegexp:
			add(f, "%q: a silence needs at least positive matchers; a negative one would silence nearly everything", s)
		}
	}
	if len(am.Silences) > 0 {
		if am.URL == "" && am.URLEnv == "" {
			add("health.alertmanager.silences", "needs health.alertmanager.url (or urlEnv)")
		}
		if !slices.ContainsFunc(am.Silences, func(s string) bool { return strings.Contains(s, "{node}") }) {
			add("health.alertmanager.silences", "no matcher names {node}: every node's silence would silence the same alerts (e.g. instance=~\"{node}.*\")")
		}
		if am.SilenceFor.Duration < time.Minute {
			add("health.alertmanager.silenceFor", "must be at least 1m, got %s", am.SilenceFor.Duration)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Hooks.Points())) {
		h := c.Hooks.Points()[name]
		f := "hooks." + name
		if strings.TrimSpace(h.Image) == "" {
			add(f+".image", "is required (the image the hook's Job runs)")
		}
		if h.Timeout.Duration < 0 {
			add(f+".timeout", "must not be negative, got %s", h.Timeout.Duration)
		}
		if h.ServiceAccountName != "" && !nodeNameRE.MatchString(h.ServiceAccountName) {
			add(f+".serviceAccountName", "%q is not a ServiceAccount name", h.ServiceAccountName)
		}
	}
}
