package journal

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// DurationsName is the ConfigMap of measured durations, next to the
// journal and the run lock.
const DurationsName = "drover-durations"

// durationsKey holds the samples in the ConfigMap.
const durationsKey = "durations.json"

// KeepSamples is how many samples of each kind are kept (the newest).
const KeepSamples = 20

// MinSamples is how many samples a median needs before a plan trusts it.
const MinSamples = 3

// SampleKey names what a sample measures: a node of a strategy and role
// ("cattle/worker", "pets/controlplane"), or the templates
// ("cattle/templates").
func SampleKey(strategy, role string) string { return strategy + "/" + role }

// Durations keeps what finished nodes (and templates) took, in seconds,
// in a ConfigMap: plans compute their ETA from the medians.
type Durations struct {
	Client    kubernetes.Interface
	Namespace string
}

// Load reads the samples; a missing ConfigMap is no samples.
func (d Durations) Load(ctx context.Context) (map[string][]float64, error) {
	cm, err := d.Client.CoreV1().ConfigMaps(d.Namespace).Get(ctx, DurationsName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return map[string][]float64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("measured durations (ConfigMap %s/%s): %w", d.Namespace, DurationsName, err)
	}
	out := map[string][]float64{}
	if raw := cm.Data[durationsKey]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &out); err != nil {
			return nil, fmt.Errorf("measured durations (ConfigMap %s/%s): %w", d.Namespace, DurationsName, err)
		}
	}
	return out, nil
}

// Add appends samples, keeping the newest KeepSamples of each kind.
func (d Durations) Add(ctx context.Context, add map[string][]time.Duration) error {
	if len(add) == 0 {
		return nil
	}
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		cms := d.Client.CoreV1().ConfigMaps(d.Namespace)
		cm, err := cms.Get(ctx, DurationsName, metav1.GetOptions{})
		create := apierrors.IsNotFound(err)
		if err != nil && !create {
			return err
		}
		if create {
			cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: DurationsName, Namespace: d.Namespace,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "drover"}}}
		}
		cur := map[string][]float64{}
		if raw := cm.Data[durationsKey]; raw != "" {
			_ = json.Unmarshal([]byte(raw), &cur) // a damaged history starts again
		}
		for k, ds := range add {
			for _, dd := range ds {
				cur[k] = append(cur[k], dd.Seconds())
			}
			if n := len(cur[k]); n > KeepSamples {
				cur[k] = cur[k][n-KeepSamples:]
			}
		}
		raw, _ := json.Marshal(cur)
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[durationsKey] = string(raw)
		if create {
			_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("configmaps"), DurationsName, err)
			}
			return err
		}
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
}

// Medians are the median durations of the kinds with at least MinSamples
// samples, and how many samples each had.
func Medians(samples map[string][]float64) (map[string]time.Duration, map[string]int) {
	med, n := map[string]time.Duration{}, map[string]int{}
	for k, s := range samples {
		if len(s) < MinSamples {
			continue
		}
		c := slices.Clone(s)
		sort.Float64s(c)
		m := c[len(c)/2]
		if len(c)%2 == 0 {
			m = (c[len(c)/2-1] + c[len(c)/2]) / 2
		}
		med[k], n[k] = time.Duration(m*float64(time.Second)).Round(time.Second), len(c)
	}
	return med, n
}
