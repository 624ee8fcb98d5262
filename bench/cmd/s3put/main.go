// Command s3put uploads its standard input to one S3 object: the stand-in
// for `aws s3 cp - s3://bucket/key` in the benchmark's anchor pipeline
// (`sqlite3 ... | gzip | s3put ...`), without needing the AWS CLI. Like the
// CLI it streams a multipart upload (8 MiB parts, 5 in flight: the AWS SDK
// transfer manager's defaults) and holds only the parts in flight in memory.
//
// Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func main() {
	endpoint := flag.String("endpoint", "", "S3 endpoint, e.g. http://127.0.0.1:9000 (empty: AWS)")
	region := flag.String("region", "us-east-1", "region")
	bucket := flag.String("bucket", "", "bucket")
	key := flag.String("key", "", "object key")
	flag.Parse()
	if *bucket == "" || *key == "" {
		fmt.Fprintln(os.Stderr, "usage: s3put -bucket B -key K [-endpoint URL] [-region R] < data")
		os.Exit(2)
	}
	opts := s3.Options{
		Region:      *region,
		Credentials: credentials.NewStaticCredentialsProvider(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), ""),
	}
	if *endpoint != "" {
		opts.BaseEndpoint = aws.String(*endpoint)
		opts.UsePathStyle = true
	}
	tm := transfermanager.New(s3.New(opts))
	_, err := tm.UploadObject(context.Background(), &transfermanager.UploadObjectInput{
		Bucket: bucket, Key: key, Body: bufio.NewReaderSize(os.Stdin, 1<<20),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "s3put:", err)
		os.Exit(1)
	}
}
