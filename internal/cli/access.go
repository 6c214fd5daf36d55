package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/prox-ops/drover/internal/observe"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/talos"
)

// Permission is one thing drover does to the cluster during a run.
type Permission struct {
	Verb, Group, Resource, Subresource string
	// Namespaced permissions are needed in drover's own namespace only;
	// InNamespace ones in that namespace only.
	Namespaced  bool
	InNamespace string
	Why         string
}

func (p Permission) String() string {
	r := p.Resource
	if p.Subresource != "" {
		r += "/" + p.Subresource
	}
	if p.Group != "" {
		r += "." + p.Group
	}
	return p.Verb + " " + r
}

// Permissions are what a run needs, and all it needs: the kit's runner
// RBAC grants exactly these (its test proves it by running as the runner).
var Permissions = []Permission{
	{Verb: "list", Resource: "nodes", Why: "read what each node runs"},
	{Verb: "get", Resource: "nodes", Why: "read a node (identity, wait Ready)"},
	{Verb: "patch", Resource: "nodes", Why: "cordon and uncordon"},
	{Verb: "delete", Resource: "nodes", Why: "delete a replaced VM's Node object"},
	{Verb: "list", Resource: "pods", Why: "drain, health checks"},
	{Verb: "watch", Resource: "nodes", Why: "the health gate's cache of the nodes"},
	{Verb: "watch", Resource: "pods", Why: "the health gate's cache of the pods"},
	{Verb: "create", Resource: "pods", Subresource: "eviction", Why: "evict pods, budgets honoured"},
	{Verb: "list", Group: "policy", Resource: "poddisruptionbudgets", Why: "drain preflight"},
	{Verb: "list", Group: "apps", Resource: "replicasets", Why: "drain preflight: the workload behind a budget"},
	{Verb: "list", Group: "discovery.k8s.io", Resource: "endpointslices", Why: "DNS check"},
	{Verb: "list", Group: "storage.k8s.io", Resource: "volumeattachments", Why: "wait for a drained node's volumes to detach"},
	{Verb: "create", Group: "batch", Resource: "jobs", Namespaced: true, Why: "the hooks (hooks.*)"},
	{Verb: "delete", Group: "batch", Resource: "jobs", Namespaced: true, Why: "replace a failed hook's Job on resume"},
	{Verb: "create", Resource: "pods", Namespaced: true, Why: "DNS, network and scheduling probes"},
	{Verb: "delete", Resource: "pods", Namespaced: true, Why: "remove the probes"},
	{Verb: "create", Group: "coordination.k8s.io", Resource: "leases", Namespaced: true, Why: "the run lock"},
	{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespaced: true, Why: "renew the run lock"},
	{Verb: "update", Resource: "configmaps", Namespaced: true, Why: "the journal (--journal configmap)"},
	{Verb: "create", Group: "events.k8s.io", Resource: "events", InNamespace: "default", Why: "a Node's events (a Node's events live in default)"},
}

type accessFlags struct {
	src         sourceFlags
	namespace   string
	output      string
	talosconfig string
}

func newAccessCmd(s Streams) *cobra.Command {
	f := &accessFlags{}
	cmd := &cobra.Command{
		Use:   "access",
		Short: "Check that drover reaches the cluster and holds every permission a run needs",
		Long: `Reach the API server as drover would (kubectl's order: --kubeconfig,
$KUBECONFIG, ~/.kube/config, the in-cluster ServiceAccount), say who drover
is there, and ask the API server (SelfSubjectAccessReview) for each
permission a run needs: on nodes, pods, evictions, budgets and endpoints
cluster-wide, and on pods, leases and configmaps in drover's namespace
($POD_NAMESPACE in the runner pod, else --namespace). It also finds the
talosconfig a run would use (--talosconfig, TALOSCONFIG, ~/.talos/config,
then the runner pod's Talos ServiceAccount, which needs the machine-config
feature kubernetesTalosAPIAccess: drover init prints the patch). Nothing is
changed. The test-runner workflow runs it. Exit 0 when every permission is
held and a talosconfig is there, 4 when one is missing or the cluster
cannot be reached.`,
		Example: `  drover access --config drover.yaml
  drover access --output markdown >> "$GITHUB_STEP_SUMMARY"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return f.run(cmd.Context(), s) },
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.src.configPath, "config", "c", "", "drover.yaml (not needed: access reads only the cluster)")
	fs.StringVar(&f.src.kubeconfig, "kubeconfig", "", "kubeconfig file (default: like kubectl)")
	f.src.registerClient(fs)
	fs.StringVar(&f.src.kubeCtx, "context", "", "kubeconfig context")
	fs.StringVar(&f.namespace, "namespace", "", "drover's namespace (default: $POD_NAMESPACE, else drover)")
	fs.StringVarP(&f.output, "output", "o", "table", "output format: table or markdown")
	fs.StringVar(&f.talosconfig, "talosconfig", "", "talosconfig file (default: like talosctl, then the runner pod's Talos ServiceAccount)")
	return cmd
}

// talosRow says where a run would find its talosconfig (as upgrade looks:
// --talosconfig, TALOSCONFIG, ~/.talos/config, the Talos ServiceAccount's
// mount), and whether it found one.
func (f *accessFlags) talosRow(s Streams) (row [4]string, ok bool) {
	res, err := talos.ConfigSource{Flag: f.talosconfig, Getenv: s.Getenv, Home: s.Home, InPod: s.talosInPod}.Resolve()
	if err != nil {
		return [4]string{"talosconfig", "Talos API", "NO", err.Error() + "; in the runner pod, enable kubernetesTalosAPIAccess for its namespace (drover init prints the machine-config patch)"}, false
	}
	res.Cleanup()
	return [4]string{"talosconfig", "Talos API", "yes", "from " + res.Source + " (pets, the etcd guard)"}, true
}

func (f *accessFlags) run(ctx context.Context, s Streams) error {
	if f.output != "table" && f.output != "markdown" {
		return usage(fmt.Errorf("--output %q: want table or markdown", f.output))
	}
	ns := f.namespace
	if ns == "" {
		ns = s.getenv("POD_NAMESPACE")
	}
	if ns == "" {
		ns = "drover"
	}
	cs, rc, err := f.src.clientset(s)
	if err != nil {
		return err
	}
	who, err := whoAmI(ctx, cs)
	if err != nil {
		return &rollout.BlockedError{Reason: "reach the cluster", Err: &observe.AccessError{Endpoint: rc.Host, Err: err}}
	}
	missing, rows, err := checkPermissions(ctx, cs, ns)
	if err != nil {
		return &rollout.BlockedError{Reason: "ask the cluster about drover's permissions", Err: &observe.AccessError{Endpoint: rc.Host, Err: err}}
	}
	talosRow, talosOK := f.talosRow(s)
	rows = append(rows, talosRow)
	if !talosOK {
		missing = append(missing, "a talosconfig (Talos API)")
	}
	if f.output == "markdown" {
		fmt.Fprintf(s.Out, "### drover access: %s as %s\n\n| Permission | Where | Held | Why |\n|---|---|---|---|\n", rc.Host, who)
		for _, r := range rows {
			fmt.Fprintf(s.Out, "| %s | %s | %s | %s |\n", r[0], r[1], r[2], r[3])
		}
	} else {
		fmt.Fprintf(s.Out, "cluster %s, as %s\n\n", rc.Host, who)
		t := newTable(s.Out)
		fmt.Fprintln(t, "PERMISSION\tWHERE\tHELD\tWHY")
		for _, r := range rows {
			fmt.Fprintf(t, "%s\t%s\t%s\t%s\n", r[0], r[1], r[2], r[3])
		}
		_ = t.Flush()
	}
	if len(missing) > 0 {
		return &rollout.BlockedError{Reason: "drover lacks permissions a run needs: " + strings.Join(missing, "; ") + " (see deploy/kubernetes/apps/github-actions/runners/rbac.yaml)"}
	}
	return nil
}

// whoAmI asks the API server who the credentials are (SelfSubjectReview).
func whoAmI(ctx context.Context, cs kubernetes.Interface) (string, error) {
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return r.Status.UserInfo.Username, nil
}

// checkPermissions asks, for each permission, whether it is held.
func checkPermissions(ctx context.Context, cs kubernetes.Interface, ns string) (missing []string, rows [][4]string, err error) {
	for _, p := range Permissions {
		attrs := &authorizationv1.ResourceAttributes{Verb: p.Verb, Group: p.Group, Resource: p.Resource, Subresource: p.Subresource}
		where := "cluster"
		if p.Namespaced {
			attrs.Namespace, where = ns, "namespace "+ns
		}
		if p.InNamespace != "" {
			attrs.Namespace, where = p.InNamespace, "namespace "+p.InNamespace
		}
		r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: attrs},
		}, metav1.CreateOptions{})
		if err != nil {
			return nil, nil, err
		}
		held := "yes"
		if !r.Status.Allowed {
			held = "NO"
			missing = append(missing, p.String()+" ("+where+")")
		}
		rows = append(rows, [4]string{p.String(), where, held, p.Why})
	}
	return missing, rows, nil
}
