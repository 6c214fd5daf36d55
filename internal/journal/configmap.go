package journal

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/prox-ops/drover/internal/rollout"
)

// ConfigMapKey holds the journal's JSON lines in the ConfigMap.
const ConfigMapKey = "journal.jsonl"

// maxConfigMapBytes keeps the ConfigMap under the API's 1 MiB limit: the
// oldest runs are dropped first.
const maxConfigMapBytes = 800 << 10

// ConfigMap keeps the journal in a ConfigMap, so a new runner pod can
// resume a run an earlier pod started.
type ConfigMap struct {
	Client    kubernetes.Interface
	Namespace string
	Name      string
	// Mask, when set, masks secrets in every entry.
	Mask func(string) string

	// mu serialises this process's writes (parallel nodes record at once);
	// conflicts with other writers are retried.
	mu sync.Mutex
}

var _ rollout.Journal = (*ConfigMap)(nil)

// ParseConfigMapRef reads "configmap", "configmap:NAME" or
// "configmap:NAMESPACE/NAME"; without a namespace the default one is used.
// ok says whether s names a ConfigMap at all (anything else is a file).
func ParseConfigMapRef(s, defaultNamespace string) (ns, name string, ok bool, err error) {
	if s != "configmap" && !strings.HasPrefix(s, "configmap:") {
		return "", "", false, nil
	}
	ns, name = defaultNamespace, "drover-journal"
	if ref, has := strings.CutPrefix(s, "configmap:"); has {
		n, m, cut := strings.Cut(ref, "/")
		if !cut {
			n, m = defaultNamespace, ref
		}
		ns, name = n, m
		bad := validation.IsDNS1123Subdomain(name)
		if cut {
			bad = append(bad, validation.IsDNS1123Label(ns)...)
		}
		if len(bad) > 0 || name == "" {
			return "", "", true, fmt.Errorf("--journal %q: want configmap, configmap:NAME or configmap:NAMESPACE/NAME with DNS names (%s)", s, strings.Join(bad, "; "))
		}
	}
	return ns, name, true, nil
}

// Record appends one entry (read-modify-write, retried on conflict),
// chained to the run's lines already in the ConfigMap.
func (c *ConfigMap) Record(ctx context.Context, e rollout.Entry) error {
	cms := c.Client.CoreV1().ConfigMaps(c.Namespace)
	c.mu.Lock()
	defer c.mu.Unlock()
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		cm, err := cms.Get(ctx, c.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			line, err := encode(&e, newChain(), c.Mask)
			if err != nil {
				return err
			}
			cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: c.Name, Namespace: c.Namespace, Labels: map[string]string{"app.kubernetes.io/managed-by": "drover"}},
				Data: map[string]string{ConfigMapKey: string(line) + "\n"}}
			if err := ensureNamespace(ctx, c.Client, c.Namespace); err != nil {
				return err
			}
			_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("configmaps"), c.Name, err)
			}
			return err
		}
		if err != nil {
			return err
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		ch := newChain()
		ch.seed([]byte(cm.Data[ConfigMapKey]))
		line, err := encode(&e, ch, c.Mask)
		if err != nil {
			return err
		}
		cm.Data[ConfigMapKey] = trimOldRuns(cm.Data[ConfigMapKey] + string(line) + "\n")
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
}

// trimOldRuns drops the oldest runs while the journal is too big.
func trimOldRuns(s string) string {
	for len(s) > maxConfigMapBytes {
		log, err := Read(strings.NewReader(s))
		if err != nil || len(log.Entries) == 0 {
			return s
		}
		oldest := log.Entries[0].RunID
		var b bytes.Buffer
		for _, line := range strings.SplitAfter(s, "\n") {
			if !strings.Contains(line, `"run":"`+oldest+`"`) {
				b.WriteString(line)
			}
		}
		if b.Len() == len(s) {
			return s
		}
		s = b.String()
	}
	return s
}

// Entries reads the whole journal back, its chain checked.
func (c *ConfigMap) Entries(ctx context.Context) ([]rollout.Entry, error) {
	cm, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("journal ConfigMap %s/%s: %w", c.Namespace, c.Name, err)
	}
	log, err := Read(strings.NewReader(cm.Data[ConfigMapKey]))
	if err != nil {
		return nil, fmt.Errorf("journal ConfigMap %s/%s: %w", c.Namespace, c.Name, err)
	}
	return log.Entries, nil
}

func ensureNamespace(ctx context.Context, c kubernetes.Interface, ns string) error {
	l := &LeaseLock{Client: c, Namespace: ns}
	return l.ensureNamespace(ctx)
}
