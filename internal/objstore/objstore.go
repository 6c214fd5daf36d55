// Package objstore keeps files in S3 (or an S3-compatible store: MinIO,
// Ceph RGW) with the MinIO Go client: drover uploads each etcd snapshot
// there before a control-plane node is touched, so the snapshot outlives
// the runner pod that took it.
package objstore

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/prox-ops/drover/internal/config"
)

// Uploader puts files under a bucket's prefix.
type Uploader struct {
	client *minio.Client
	bucket string
	prefix string
}

// CredentialsError says the credentials are missing from the environment.
type CredentialsError struct{ Missing []string }

func (e *CredentialsError) Error() string {
	return "talos.etcdSnapshotUpload needs S3 credentials: " + strings.Join(e.Missing, " and ") + " not set"
}

// New builds an Uploader for the configured location, with the
// credentials getenv finds (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
// AWS_SESSION_TOKEN). It does not dial anything.
func New(up config.SnapshotUpload, getenv func(string) string) (*Uploader, error) {
	var missing []string
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		if getenv(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, &CredentialsError{Missing: missing}
	}
	region := up.Region
	if region == "" {
		region = "us-east-1"
	}
	endpoint := up.Endpoint
	if endpoint == "" {
		endpoint = "https://s3." + region + ".amazonaws.com"
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("talos.etcdSnapshotUpload.endpoint: %w", err)
	}
	lookup := minio.BucketLookupDNS
	if up.PathStyle {
		lookup = minio.BucketLookupPath
	}
	c, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"), getenv("AWS_SESSION_TOKEN")),
		Secure:       u.Scheme == "https",
		Region:       region,
		BucketLookup: lookup,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 client for %s: %w", endpoint, err)
	}
	return &Uploader{client: c, bucket: up.Bucket(), prefix: up.Prefix()}, nil
}

// Check is the preflight: the bucket exists and the credentials reach it.
func (u *Uploader) Check(ctx context.Context) error {
	ok, err := u.client.BucketExists(ctx, u.bucket)
	if err != nil {
		return fmt.Errorf("S3 bucket %s: %w", u.bucket, err)
	}
	if !ok {
		return fmt.Errorf("S3 bucket %s does not exist", u.bucket)
	}
	return nil
}

// Upload puts the file at PREFIX/NAME and checks the store holds all of
// it. It returns the object's s3:// URL.
func (u *Uploader) Upload(ctx context.Context, file string) (string, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return "", err
	}
	key := path.Join(u.prefix, filepath.Base(file))
	if _, err := u.client.FPutObject(ctx, u.bucket, key, file, minio.PutObjectOptions{ContentType: "application/octet-stream"}); err != nil {
		return "", fmt.Errorf("put s3://%s/%s: %w", u.bucket, key, err)
	}
	st, err := u.client.StatObject(ctx, u.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return "", fmt.Errorf("stat s3://%s/%s after the upload: %w", u.bucket, key, err)
	}
	if st.Size != fi.Size() {
		return "", fmt.Errorf("s3://%s/%s holds %d bytes, the snapshot %d", u.bucket, key, st.Size, fi.Size())
	}
	return "s3://" + u.bucket + "/" + key, nil
}
