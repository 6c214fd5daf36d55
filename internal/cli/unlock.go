package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/journal"
)

// lockFlags name the run lock's Lease.
type lockFlags struct {
	namespace string
	name      string
	ttl       time.Duration
}

func (l *lockFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&l.namespace, "lock-namespace", "", "namespace of the run lock Lease (default: $POD_NAMESPACE, else drover)")
	fs.StringVar(&l.name, "lock-name", "drover-upgrade", "name of the run lock Lease")
	fs.DurationVar(&l.ttl, "lock-ttl", 2*time.Minute, "how long a lock lives without renewal (a crashed run's lock expires after it)")
}

func (l *lockFlags) lease(c kubernetes.Interface, clk clock.Clock, s Streams) *journal.LeaseLock {
	ns := l.namespace
	if ns == "" {
		ns = s.getenv("POD_NAMESPACE")
	}
	if ns == "" {
		ns = "drover"
	}
	return &journal.LeaseLock{Client: c, Clock: clk, Namespace: ns, Name: l.name, TTL: l.ttl}
}

func newUnlockCmd(s Streams) *cobra.Command {
	var src sourceFlags
	var lock lockFlags
	cmd := &cobra.Command{
		Use:   "unlock",
		Short: "Break the run lock (a coordination.k8s.io Lease) explicitly",
		Long: `Break the run lock. drover holds a Lease (default drover-upgrade in its
namespace) for the whole run and renews it; a crashed run's lock expires by
itself after --lock-ttl. Use unlock only when you are sure no upgrade runs:
cancel the workflow first (see docs/runbooks).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, _, err := src.clientset(s)
			if err != nil {
				return err
			}
			l := lock.lease(cs, clock.Real{}, s)
			holder, err := l.Break(cmd.Context())
			if err != nil {
				return err
			}
			if holder == "" {
				fmt.Fprintf(s.Out, "no run lock %s/%s held\n", l.Namespace, l.Name)
				return nil
			}
			fmt.Fprintf(s.Out, "broke run lock %s/%s held by %s\n", l.Namespace, l.Name, holder)
			return nil
		},
	}
	cmd.Flags().StringVar(&src.kubeconfig, "kubeconfig", "", "kubeconfig file (default: like kubectl)")
	src.registerClient(cmd.Flags())
	cmd.Flags().StringVar(&src.kubeCtx, "context", "", "kubeconfig context")
	lock.register(cmd.Flags())
	return cmd
}
