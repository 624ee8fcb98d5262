package destination

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"gocloud.dev/blob"
)

// Retain sets o (nil: new options) to put the upload under lock's
// retention, from now: S3 Object Lock mode and retain-until date, with a
// CRC32 checksum (S3 requires one on a PUT with Object Lock parameters).
// With no lock it returns o unchanged.
func Retain(o *blob.WriterOptions, lock ObjectLock, now time.Time) *blob.WriterOptions {
	if lock.Mode == "" {
		return o
	}
	if o == nil {
		o = &blob.WriterOptions{}
	}
	until := now.Add(time.Duration(lock.Days) * 24 * time.Hour).UTC()
	thenBeforeWrite(o, func(as func(any) bool) error {
		var in *transfermanager.UploadObjectInput
		if !as(&in) {
			return fmt.Errorf("object lock: the destination is not S3 (only S3 Object Lock is supported)")
		}
		in.ObjectLockMode = tmtypes.ObjectLockMode(lock.Mode)
		in.ObjectLockRetainUntilDate = aws.Time(until)
		in.ChecksumAlgorithm = tmtypes.ChecksumAlgorithmCrc32
		return nil
	})
	return o
}

// CheckObjectLock asks the bucket's Object Lock configuration: a bucket
// created without Object Lock cannot take retention, and uploads would
// fail. It returns nil when lock is zero.
func CheckObjectLock(ctx context.Context, b *blob.Bucket, bucket string, lock ObjectLock) error {
	if lock.Mode == "" {
		return nil
	}
	var client *s3.Client
	if !b.As(&client) {
		return errors.New("object lock is supported for S3 destinations only")
	}
	out, err := client.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: aws.String(bucket)})
	if err != nil {
		return err
	}
	if out.ObjectLockConfiguration == nil || out.ObjectLockConfiguration.ObjectLockEnabled != s3types.ObjectLockEnabledEnabled {
		return fmt.Errorf("bucket %s does not have Object Lock enabled (it can only be enabled when the bucket is created)", bucket)
	}
	return nil
}
