package objstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/testenv"
)

// The uploads go to a real S3 server: MinIO, built from its module.

func env(s testenv.S3) func(string) string {
	return func(k string) string {
		return map[string]string{"AWS_ACCESS_KEY_ID": s.AccessKey, "AWS_SECRET_ACCESS_KEY": s.SecretKey}[k]
	}
}

func TestUploadKeepsTheSnapshotInTheBucket(t *testing.T) {
	s := testenv.StartMinIO(t, "prox-ops-state")
	up, err := New(config.SnapshotUpload{URL: "s3://prox-ops-state/etcd-snapshots/", Endpoint: s.Endpoint, PathStyle: true}, env(s))
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("etcd-snapshot-"), 50000)
	file := filepath.Join(t.TempDir(), "etcd-20261126T080000Z-k8s-ctrl-1.snapshot")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	url, err := up.Upload(t.Context(), file)
	if err != nil {
		t.Fatal(err)
	}
	if url != "s3://prox-ops-state/etcd-snapshots/etcd-20261126T080000Z-k8s-ctrl-1.snapshot" {
		t.Fatalf("url %s", url)
	}
	obj, err := s.Client(t).GetObject(context.Background(), "prox-ops-state", "etcd-snapshots/etcd-20261126T080000Z-k8s-ctrl-1.snapshot", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the bucket holds %d bytes (%v), want the snapshot's %d", len(got), err, len(data))
	}
}

func TestUploadFailures(t *testing.T) {
	s := testenv.StartMinIO(t, "prox-ops-state")
	file := filepath.Join(t.TempDir(), "etcd.snapshot")
	if err := os.WriteFile(file, []byte("snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		up     config.SnapshotUpload
		getenv func(string) string
		want   string
	}{
		{"a bucket that does not exist", config.SnapshotUpload{URL: "s3://nope/x", Endpoint: s.Endpoint, PathStyle: true}, env(s), "does not exist"},
		{"wrong credentials", config.SnapshotUpload{URL: "s3://prox-ops-state/x", Endpoint: s.Endpoint, PathStyle: true},
			func(k string) string {
				return map[string]string{"AWS_ACCESS_KEY_ID": "drover-test", "AWS_SECRET_ACCESS_KEY": "wrong-secret"}[k]
			}, "signature"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up, err := New(tc.up, tc.getenv)
			if err != nil {
				t.Fatal(err)
			}
			err = up.Check(t.Context())
			if err == nil {
				_, err = up.Upload(t.Context(), file)
			}
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "wrong-secret") || strings.Contains(err.Error(), s.SecretKey) {
				t.Fatal("the error shows a secret")
			}
		})
	}
}

func TestNewWithoutCredentials(t *testing.T) {
	_, err := New(config.SnapshotUpload{URL: "s3://b/x"}, func(string) string { return "" })
	var ce *CredentialsError
	if !errors.As(err, &ce) || len(ce.Missing) != 2 {
		t.Fatalf("err = %v", err)
	}
}
