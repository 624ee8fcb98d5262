package destination

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azblobblob "github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

// Incomplete uploads. S3 and Azure leave something behind that costs money
// and must be cleaned up: the parts of a multipart upload that was neither
// completed nor aborted, and the blocks an upload staged but never
// committed (Azure removes those only after a week, or when a commit of
// the same blob leaves them out). GCS resumable sessions hold nothing
// visible and expire by themselves; LOCAL temp files are removed by the
// writer. These helpers keep the S3 and Azure SDKs inside this package.

// UploadID is the id of the incomplete multipart upload a failed upload
// reports, or "" (not S3, or no upload was started).
func UploadID(err error) string {
	var mu interface{ UploadID() string }
	if err == nil || !errors.As(err, &mu) {
		return ""
	}
	return mu.UploadID()
}

// StagesBlocks reports whether a failed upload to b leaves blocks staged
// under its key (Azure), which AbortUpload with no upload id discards.
func StagesBlocks(b *blob.Bucket) bool {
	var cc *container.Client
	return b.As(&cc)
}

// AbortUpload aborts one multipart upload of key in bucketName by its id
// (S3), or discards the uncommitted blocks of key (Azure; uploadID is not
// used). An upload that is already gone is not an error; other buckets
// have nothing to abort.
func AbortUpload(ctx context.Context, b *blob.Bucket, bucketName, key, uploadID string) error {
	var cc *container.Client
	if b.As(&cc) {
		return redactErr(discardUncommitted(ctx, cc, key))
	}
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
//
// On Azure, where staged blocks carry no time, it discards the uncommitted
// blocks of key unless key is a committed blob (aborted then names key).
func AbortUploadsBetween(ctx context.Context, b *blob.Bucket, bucketName, key string, from, to time.Time) (aborted []string, err error) {
	var cc *container.Client
	if b.As(&cc) {
		ok, err := discardUncommittedBlob(ctx, cc, key)
		if ok {
			aborted = []string{key}
		}
		return aborted, redactErr(err)
	}
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

// discardUncommitted discards the blocks staged under key that were never
// committed (see discardUncommittedBlob).
func discardUncommitted(ctx context.Context, cc *container.Client, key string) error {
	_, err := discardUncommittedBlob(ctx, cc, key)
	return err
}

// discardUncommittedBlob: a blob that exists only as uncommitted blocks
// cannot be deleted as such; committing an empty block list (only if no
// blob is committed under key: If-None-Match *) discards every block left
// out of the list, and the empty blob it makes (marked discardMarker) is
// deleted (only that one: If-Match its ETag; a later call deletes it if
// this one could not). The uncommitted blocks of a committed blob are left
// alone: committing again would replace an object this run did not write.
// It reports whether it discarded anything.
func discardUncommittedBlob(ctx context.Context, cc *container.Client, key string) (bool, error) {
	bb := cc.NewBlockBlobClient(key)
	bl, err := bb.GetBlockList(ctx, blockblob.BlockListTypeAll, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var etag *azcore.ETag
	switch {
	case len(bl.CommittedBlocks) > 0:
		return false, nil
	case len(bl.UncommittedBlocks) > 0:
		anyTag := azcore.ETagAny
		marker := "1"
		resp, err := bb.CommitBlockList(ctx, nil, &blockblob.CommitBlockListOptions{Metadata: map[string]*string{discardMarker: &marker},
			AccessConditions: &azblobblob.AccessConditions{ModifiedAccessConditions: &azblobblob.ModifiedAccessConditions{IfNoneMatch: &anyTag}}})
		if bloberror.HasCode(err, bloberror.BlobAlreadyExists, bloberror.ConditionNotMet) {
			return false, nil // committed meanwhile: not ours to touch
		}
		if err != nil {
			return false, err
		}
		etag = resp.ETag
	default:
		// An empty committed blob: ours only if a discard made it.
		props, err := bb.GetProperties(ctx, nil)
		if bloberror.HasCode(err, bloberror.BlobNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		marked := false
		for k := range props.Metadata {
			marked = marked || strings.EqualFold(k, discardMarker)
		}
		if !marked {
			return false, nil
		}
		etag = props.ETag
	}
	_, err = bb.Delete(ctx, &azblobblob.DeleteOptions{AccessConditions: &azblobblob.AccessConditions{
		ModifiedAccessConditions: &azblobblob.ModifiedAccessConditions{IfMatch: etag}}})
	if bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ConditionNotMet) {
		err = nil
	}
	return true, err
}

// discardMarker is the metadata of the empty blob a discard commits.
const discardMarker = "auditexportdiscard"

// RemoveUnconfirmed deletes the object at key when it is the one an upload
// whose commit was never confirmed may have made: the upload sent all of
// its size bytes and asked the store to commit them, and the answer never
// came (the connection was reset or black-holed at that moment), so the
// object may exist although the run recorded a failure. It is deleted only
// if it has that size and was last modified at or after since (the
// upload's start, less the second the stores round Last-Modified to), so an
// object written before the upload — another run's, at a fixed key — is
// left alone. It reports whether it deleted one; an object under retention
// (S3 Object Lock) cannot be deleted and is reported as the error.
func RemoveUnconfirmed(ctx context.Context, b *blob.Bucket, key string, size int64, since time.Time) (bool, error) {
	a, err := b.Attributes(ctx, key)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return false, nil
	}
	if err != nil {
		return false, redactErr(err)
	}
	if a.Size != size || a.ModTime.Before(since.Add(-time.Second)) {
		return false, nil
	}
	if err := b.Delete(ctx, key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return false, redactErr(err)
	}
	return true, nil
}
