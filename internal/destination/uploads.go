package destination

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"gocloud.dev/blob"
)

// Incomplete uploads. Only S3 leaves something behind that costs money and
// must be cleaned up: the parts of a multipart upload that was neither
// completed nor aborted. (Azure's uncommitted blocks and GCS resumable
// sessions expire by themselves; LOCAL temp files are removed by the
// writer.) These helpers keep the S3 SDK inside this package.

// UploadID is the id of the incomplete multipart upload a failed upload
// reports, or "" (not S3, or no upload was started).
func UploadID(err error) string {
	var mu interface{ UploadID() string }
	if err == nil || !errors.As(err, &mu) {
		return ""
	}
	return mu.UploadID()
}

// AbortUpload aborts one multipart upload of key in bucketName by its id.
// An upload that is already gone is not an error; a bucket that is not S3
// has nothing to abort.
func AbortUpload(ctx context.Context, b *blob.Bucket, bucketName, key, uploadID string) error {
	var client *s3.Client
	if !b.As(&client) {
		return nil
	}
	_, err := client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(bucketName), Key: aws.String(key), UploadId: aws.String(uploadID)})
	var nsu *s3types.NoSuchUpload
	if errors.As(err, &nsu) {
		return nil
	}
	return redactErr(err)
}

// AbortUploadsBetween aborts the incomplete multipart uploads of exactly key
// initiated within [from, to] (a window that keeps other runs' uploads of
// the same key out). It returns the ids it aborted; err is the first
// failure (listing, or an abort), the others are still tried.
func AbortUploadsBetween(ctx context.Context, b *blob.Bucket, bucketName, key string, from, to time.Time) (aborted []string, err error) {
	var client *s3.Client
	if !b.As(&client) {
		return nil, nil
	}
	out, err := client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucketName), Prefix: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("listing uploads: %w", redactErr(err))
	}
	for _, u := range out.Uploads {
		if aws.ToString(u.Key) != key || u.Initiated == nil || u.Initiated.Before(from) || u.Initiated.After(to) {
			continue
		}
		if aerr := AbortUpload(ctx, b, bucketName, key, aws.ToString(u.UploadId)); aerr != nil {
			if err == nil {
				err = aerr
			}
			continue
		}
		aborted = append(aborted, aws.ToString(u.UploadId))
	}
	return aborted, err
}
