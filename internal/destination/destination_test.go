package destination

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"gocloud.dev/blob/memblob"

	"github.com/auditexport/auditexport/internal/testenv"
)

func TestParseDestination(t *testing.T) {
	const az = "azure://acct1.blob.core.windows.net"
	tests := []struct {
		p       Provider
		uri     string
		want    Location // zero when an error is expected
		wantErr string   // substring of the error
	}{
		{S3, "s3://bucket/prefix/", Location{S3, "s3", "", "bucket", "prefix/"}, ""},
		{S3, "s3://bucket/a/b", Location{S3, "s3", "", "bucket", "a/b/"}, ""},
		{S3, "s3://bucket", Location{S3, "s3", "", "bucket", ""}, ""},
		{S3, "s3://bucket/", Location{S3, "s3", "", "bucket", ""}, ""},
		{S3, "S3://my.bucket-1/x/", Location{S3, "s3", "", "my.bucket-1", "x/"}, ""},
		{"PROVIDER_S3", "s3://bucket/p/", Location{S3, "s3", "", "bucket", "p/"}, ""},
		{GCS, "gcs://bkt_1/p/", Location{GCS, "gcs", "", "bkt_1", "p/"}, ""},
		{GCS, "gs://bkt/p", Location{GCS, "gcs", "", "bkt", "p/"}, ""},
		{AzureBlob, az + "/logs/audit/", Location{AzureBlob, "azure", "acct1", "logs", "audit/"}, ""},
		{AzureBlob, az + "/logs", Location{AzureBlob, "azure", "acct1", "logs", ""}, ""},
		{Local, "file:///var/exports", Location{Local, "file", "", "", "/var/exports/"}, ""},
		{Local, "file:///var/exports/", Location{Local, "file", "", "", "/var/exports/"}, ""},

		{GCS, "s3://bucket/p/", Location{}, `scheme "s3" does not match provider GCS (want gcs:// or gs://)`},
		{S3, "gs://bucket/p/", Location{}, `scheme "gs" does not match provider S3 (want s3://)`},
		{S3, "https://bucket/p/", Location{}, `does not match provider S3`},
		{"FTP", "ftp://x/", Location{}, `unknown provider "FTP"`},
		{S3, "bucket/prefix/", Location{}, `must be a URI like s3://bucket/prefix/`},
		{S3, "", Location{}, "must not be empty"},
		{S3, "s3:///prefix/", Location{}, "must name a bucket"},
		{S3, "s3://Bucket/p/", Location{}, `bucket "Bucket" is not a valid S3 bucket name`},
		{S3, "s3://ab/p/", Location{}, "not a valid S3 bucket name"},
		{S3, "s3://" + strings.Repeat("a", 64) + "/", Location{}, "not a valid S3 bucket name"},
		{S3, "s3://under_score/", Location{}, "not a valid S3 bucket name"},
		{S3, "s3://192.168.1.1/", Location{}, "not a valid S3 bucket name"},
		{S3, "s3://-bucket/", Location{}, "not a valid S3 bucket name"},
		{S3, "s3://a..b/", Location{}, "not a valid S3 bucket name"},
		{GCS, "gcs://google-logs/", Location{}, "not a valid GCS bucket name"},
		{GCS, "gcs://b@d/", Location{}, "not a valid GCS bucket name"},
		{S3, "s3://bucket/a/../b/", Location{}, `must not contain ".." segments`},
		{S3, "s3://bucket/../", Location{}, `must not contain ".." segments`},
		{S3, "s3://bucket/./a/", Location{}, `must not contain "." segments`},
		{S3, "s3://bucket/a//b/", Location{}, "empty path segments"},
		{S3, "s3://bucket//a/", Location{}, "empty path segments"},
		{S3, "s3://bucket/%2e%2e/", Location{}, "percent-encoding"},
		{S3, "s3://bucket/a%2Fb/", Location{}, "percent-encoding"},
		{S3, `s3://bucket/a\b/`, Location{}, "backslashes"},
		{S3, "s3://bucket/a\x00b/", Location{}, "control characters"},
		{S3, "s3://bucket/a\nb/", Location{}, "control characters"},
		{S3, "s3://bucket/p/?x=1", Location{}, "query string or fragment"},
		{S3, "s3://bucket/p/#frag", Location{}, "query string or fragment"},
		{S3, "s3://bucket/" + strings.Repeat("a", 1020), Location{}, "at most 1024 bytes"},
		{S3, "s3://bucket/\xff/", Location{}, "UTF-8"},
		{S3, "s3://bucket/{date}/", Location{}, "template tokens"},
		{AzureBlob, "azure://acct1.example.com/logs/", Location{}, "host must be <account>.blob.core.windows.net"},
		{AzureBlob, "azure://127.0.0.1:10000/devstoreaccount1/logs/", Location{}, "host must be"},
		{AzureBlob, "azure://ab.blob.core.windows.net/logs/", Location{}, `storage account "ab" is not valid`},
		{AzureBlob, "azure://acct_1.blob.core.windows.net/logs/", Location{}, "storage account"},
		{AzureBlob, az + "/", Location{}, "must name a container"},
		{AzureBlob, az + "/Logs/", Location{}, `container "Logs" is not valid`},
		{AzureBlob, az + "/a--b/", Location{}, "is not valid"},
		{AzureBlob, "s3://bucket/", Location{}, "(want azure://)"},
		{Local, "file://relative/dir/", Location{}, "absolute path with an empty host"},
		{Local, "file:relative/dir", Location{}, "must be a URI like file:///var/exports/"},
		{Local, "file:///", Location{}, "below the filesystem root"},
		{Local, "file:///var/../etc/", Location{}, `".." segments`},
		{Local, "file:////etc/", Location{}, "empty path segments"},
		{Local, "s3://bucket/", Location{}, "(want file://)"},
	}
	for _, tc := range tests {
		got, err := ParseDestination(tc.p, tc.uri)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseDestination(%s, %q) = %+v, %v; want error containing %q", tc.p, tc.uri, got, err, tc.wantErr)
			} else if !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseDestination(%s, %q): error %v does not match ErrInvalid", tc.p, tc.uri, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseDestination(%s, %q) = %+v, %v; want %+v", tc.p, tc.uri, got, err, tc.want)
		}
	}
}

func TestLocationString(t *testing.T) {
	tests := map[string]string{
		"s3://bucket/prefix": "s3://bucket/prefix/",
		"gs://bucket/p/":     "gcs://bucket/p/",
		"s3://bucket":        "s3://bucket/",
		"azure://acct1.blob.core.windows.net/c1c/p/": "azure://acct1.blob.core.windows.net/c1c/p/",
		"AZURE://ACCT1.blob.core.windows.net/c1c/p/": "azure://acct1.blob.core.windows.net/c1c/p/",
		"file:///var/exports":                        "file:///var/exports/",
	}
	prov := map[string]Provider{"s3": S3, "gs": GCS, "az": AzureBlob, "AZ": AzureBlob, "fi": Local}
	for in, want := range tests {
		loc, err := ParseDestination(prov[in[:2]], in)
		if err != nil {
			t.Fatalf("ParseDestination(%q): %v", in, err)
		}
		if got := loc.String(); got != want {
			t.Errorf("String() of %q = %q, want %q", in, got, want)
		}
	}
}

func TestValidateObjectURI(t *testing.T) {
	mustBase := func(p Provider, uri string) Location {
		t.Helper()
		l, err := ParseDestination(p, uri)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	s3 := mustBase(S3, "s3://bucket/prefix/")
	pre := mustBase(S3, "s3://b-1/pre")
	root := mustBase(S3, "s3://bucket")
	gcs := mustBase(GCS, "gs://bkt/exports/")
	az := mustBase(AzureBlob, "azure://acct1.blob.core.windows.net/logs/audit/")
	local := mustBase(Local, "file:///var/exports/")

	tests := []struct {
		base     Location
		uri      string
		wantPath string
		wantErr  string
	}{
		{s3, "s3://bucket/prefix/x.csv", "prefix/x.csv", ""},
		{s3, "s3://bucket/prefix/{yyyy}/{mm}/{dd}/audit_{date}_{time}.csv.gz", "prefix/{yyyy}/{mm}/{dd}/audit_{date}_{time}.csv.gz", ""},
		{s3, "s3://bucket/prefix/{period_start}-{period_end}_{run_id}_{schedule_id}_{hh}.jsonl", "prefix/{period_start}-{period_end}_{run_id}_{schedule_id}_{hh}.jsonl", ""},
		{root, "s3://bucket/x.csv", "x.csv", ""},
		{gcs, "gcs://bkt/exports/a/x.csv", "exports/a/x.csv", ""},
		{gcs, "gs://bkt/exports/x.csv", "exports/x.csv", ""},
		{az, "azure://acct1.blob.core.windows.net/logs/audit/x.parquet", "audit/x.parquet", ""},
		{local, "file:///var/exports/daily/{date}.csv", "/var/exports/daily/{date}.csv", ""},

		{s3, "s3://bucket/prefix/../other/x.csv", "", `must not contain ".." segments`},
		{s3, "s3://bucket/prefix/./x.csv", "", `must not contain "." segments`},
		{s3, "s3://bucket/prefix/a//x.csv", "", "empty path segments"},
		{s3, "s3://bucket/other/x.csv", "", "must lie under s3://bucket/prefix/"},
		{s3, "s3://bucket/prefix", "", "must lie under s3://bucket/prefix/"},
		{s3, "s3://other-bucket/prefix/x.csv", "", "must lie under s3://bucket/prefix/"},
		{pre, "s3://b-1/prefix2/x.csv", "", "must lie under s3://b-1/pre/"},
		{pre, "s3://b-1/pre-x.csv", "", "must lie under s3://b-1/pre/"},
		{s3, "s3://bucket/prefix/%2e%2e/x.csv", "", "percent-encoding"},
		{s3, "s3://bucket/prefix/..%2fother/x.csv", "", "percent-encoding"},
		{s3, "s3://bucket/prefix/%2E%2E%2Fx.csv", "", "percent-encoding"},
		{s3, `s3://bucket/prefix/..\x.csv`, "", "backslashes"},
		{s3, "s3://bucket/prefix/", "", "not a directory"},
		{s3, "s3://bucket/prefix/sub/", "", "not a directory"},
		{root, "s3://bucket/", "", "not a directory"},
		{s3, "s3://bucket/prefix/{unknown}.csv", "", "unknown token {unknown}"},
		{s3, "s3://bucket/prefix/{DATE}.csv", "", "unknown token {DATE}"},
		{s3, "s3://bucket/prefix/{date.csv", "", `unbalanced "{"`},
		{s3, "s3://bucket/prefix/{da{date}te}.csv", "", `unbalanced "{"`},
		{s3, "s3://bucket/prefix/date}.csv", "", `unbalanced "}"`},
		{s3, "s3://bucket/prefix/{}.csv", "", "unknown token {}"},
		{s3, "s3://{date}/prefix/x.csv", "", "not a valid S3 bucket name"},
		{s3, "gs://bucket/prefix/x.csv", "", `scheme "gs" does not match provider S3`},
		{gcs, "s3://bkt/exports/x.csv", "", `scheme "s3" does not match provider GCS (want gcs:// or gs://)`},
		{gcs, "gcs://bkt2/exports/x.csv", "", "must lie under gcs://bkt/exports/"},
		{az, "azure://acct2.blob.core.windows.net/logs/audit/x.csv", "", "must lie under azure://acct1.blob.core.windows.net/logs/audit/"},
		{az, "azure://acct1.blob.core.windows.net/logs2/audit/x.csv", "", "must lie under"},
		{local, "file:///var/exports2/x.csv", "", "must lie under file:///var/exports/"},
		{local, "file:///etc/passwd", "", "must lie under file:///var/exports/"},
		{local, "file://host/var/exports/x.csv", "", "empty host"},
		{s3, "s3://bucket/prefix/x.csv?versionId=1", "", "query string"},
		{Location{}, "s3://bucket/x.csv", "", "destination"},
		// A hand-built base missing its trailing "/" must not admit siblings.
		{Location{Provider: S3, Scheme: "s3", Bucket: "b-1", Path: "pre"}, "s3://b-1/prefix2/x.csv", "", "must lie under s3://b-1/pre/"},
	}
	for _, tc := range tests {
		got, err := ValidateObjectURI(tc.base, tc.uri)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ValidateObjectURI(%s, %q) = %+v, %v; want error containing %q", tc.base, tc.uri, got, err, tc.wantErr)
			} else if !errors.Is(err, ErrInvalid) {
				t.Errorf("ValidateObjectURI(%s, %q): %v does not match ErrInvalid", tc.base, tc.uri, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ValidateObjectURI(%s, %q): %v", tc.base, tc.uri, err)
			continue
		}
		if got.Path != tc.wantPath || got.Bucket != tc.base.Bucket || got.Account != tc.base.Account || got.Scheme != tc.base.Scheme {
			t.Errorf("ValidateObjectURI(%s, %q) = %+v, want path %q under the base", tc.base, tc.uri, got, tc.wantPath)
		}
	}
}

func TestCheckExtension(t *testing.T) {
	tests := []struct {
		uri, format, comp, wantErr string
	}{
		{"s3://b/p/x.csv", "CSV", "NONE", ""},
		{"s3://b/p/x.csv.gz", "CSV", "GZIP", ""},
		{"s3://b/p/x.csv.zst", "CSV", "ZSTD", ""},
		{"s3://b/p/x.csv.zstd", "CSV", "ZSTD", ""},
		{"s3://b/p/x.jsonl", "JSONL", "NONE", ""},
		{"s3://b/p/x.ndjson.gz", "JSONL", "GZIP", ""},
		{"s3://b/p/x.parquet", "PARQUET", "NONE", ""},
		{"s3://b/p/x_{date}.CSV.GZ", "CSV", "GZIP", ""},
		{"s3://b/p/x.csv", "FORMAT_CSV", "COMPRESSION_NONE", ""},
		{"s3://b/p/x.csv", "CSV", "GZIP", `uri must end in ".csv.gz" for CSV with GZIP`},
		{"s3://b/p/x.csv.gz", "CSV", "NONE", `uri must end in ".csv" for CSV with NONE`},
		{"s3://b/p/x.csv.gz", "CSV", "ZSTD", `uri must end in ".csv.zst" for CSV with ZSTD`},
		{"s3://b/p/x.json", "JSONL", "NONE", `uri must end in ".jsonl" or ".ndjson" for JSONL with NONE`},
		{"s3://b/p/x.jsonl", "CSV", "NONE", `".csv"`},
		{"s3://b/x.csv/data", "CSV", "NONE", `".csv"`},
		{"s3://b/p/x.parquet.gz", "PARQUET", "GZIP", "Parquet compresses internally; use COMPRESSION_NONE"},
		{"s3://b/p/x.parquet", "PARQUET", "ZSTD", "Parquet compresses internally"},
		{"s3://b/p/x.xml", "XML", "NONE", `unknown format "XML"`},
		{"s3://b/p/x.csv", "CSV", "BZIP2", `unknown compression "BZIP2"`},
	}
	for _, tc := range tests {
		err := CheckExtension(tc.uri, tc.format, tc.comp)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("CheckExtension(%q, %s, %s): %v", tc.uri, tc.format, tc.comp, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckExtension(%q, %s, %s) = %v, want error containing %q", tc.uri, tc.format, tc.comp, err, tc.wantErr)
		}
	}
}

func TestRender(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no tzdata: %v", err)
	}
	v := Vars{
		Time:        time.Date(2024, 3, 10, 4, 5, 6, 0, time.UTC), // 23:05:06 on the 9th in New York (EST)
		PeriodStart: time.Date(2024, 3, 9, 5, 0, 0, 0, time.UTC),
		PeriodEnd:   time.Date(2024, 3, 10, 7, 0, 0, 0, time.UTC), // after the DST switch: 03:00 EDT
		RunID:       "run_01HX",
		ScheduleID:  "sch_01HY",
		Zone:        ny,
	}
	tests := []struct {
		uri, want, wantErr string
		vars               Vars
	}{
		{uri: "s3://b/p/{yyyy}/{mm}/{dd}/{hh}/a_{date}_{time}.csv", want: "s3://b/p/2024/03/09/23/a_2024-03-09_230506.csv", vars: v},
		{uri: "s3://b/p/{period_start}_{period_end}.csv", want: "s3://b/p/20240309T000000_20240310T030000.csv", vars: v},
		{uri: "s3://b/p/{schedule_id}/{run_id}.csv", want: "s3://b/p/sch_01HY/run_01HX.csv", vars: v},
		{uri: "s3://b/p/plain.csv", want: "s3://b/p/plain.csv", vars: v},
		{uri: "s3://b/p/{date}.csv", want: "s3://b/p/2024-03-10.csv", vars: Vars{Time: v.Time}}, // nil zone = UTC
		{uri: "s3://b/p/{nope}.csv", wantErr: "unknown token {nope}", vars: v},
		{uri: "s3://b/p/{date.csv", wantErr: "unbalanced", vars: v},
		{uri: "s3://b/p/{run_id}.csv", wantErr: "token {run_id} has no value", vars: Vars{Time: v.Time}},
		{uri: "s3://b/p/{run_id}/x.csv", wantErr: "unsafe value", vars: Vars{RunID: ".."}},
		{uri: "s3://b/p/{schedule_id}.csv", wantErr: "unsafe value", vars: Vars{ScheduleID: "a/../../b"}},
	}
	for _, tc := range tests {
		got, err := Render(tc.uri, tc.vars)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Render(%q) = %q, %v; want error containing %q", tc.uri, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Render(%q) = %q, %v; want %q", tc.uri, got, err, tc.want)
		}
	}
}

func TestPrefixFileName(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no tzdata: %v", err)
	}
	ts := time.Date(2024, 7, 1, 2, 3, 4, 0, time.UTC) // 22:03:04 on June 30 in New York (EDT)
	tests := []struct {
		uri  string
		zone *time.Location
		want string
	}{
		{"s3://b/p/x.csv", ny, "s3://b/p/2024-06-30_220304_x.csv"},
		{"s3://b/p/x.csv", nil, "s3://b/p/2024-07-01_020304_x.csv"},
		{"file:///var/exports/{date}.csv", time.UTC, "file:///var/exports/2024-07-01_020304_{date}.csv"},
		{"x.csv", time.UTC, "2024-07-01_020304_x.csv"},
	}
	for _, tc := range tests {
		if got := PrefixFileName(tc.uri, ts, tc.zone); got != tc.want {
			t.Errorf("PrefixFileName(%q) = %q, want %q", tc.uri, got, tc.want)
		}
	}
}

func TestErrorType(t *testing.T) {
	_, err := ParseDestination(S3, "gs://b/")
	var e *Error
	if !errors.As(err, &e) || e.Msg != err.Error() || strings.Contains(err.Error(), "invalid destination") {
		t.Fatalf("error %v: want *Error whose text is only the human message", err)
	}
	if errors.Is(errors.New("other"), ErrInvalid) {
		t.Fatal("unrelated errors must not match ErrInvalid")
	}
}

// TestWarmGCSConditions: the warm-up still finds the conditional setters
// of the GCS call types (a renamed API would make it a silent no-op).
func TestWarmGCSConditions(t *testing.T) {
	if n := warmGCSConditions(); n < 20 {
		t.Fatalf("warmed %d GCS condition setters, want >= 20 (Insert, Get, Delete, Patch, Rewrite, Copy, Compose each have several)", n)
	}
}

// TestRemoveUnconfirmed: only an object of the upload's size, written since
// the upload started, is removed; an older object at the key (another
// run's) or one of another size is left, and a missing one is no error.
func TestRemoveUnconfirmed(t *testing.T) {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	defer b.Close()
	if removed, err := RemoveUnconfirmed(ctx, b, "none.csv", 3, time.Now()); removed || err != nil {
		t.Fatalf("missing object: removed %v, err %v", removed, err)
	}
	testenv.Must(t, b.WriteAll(ctx, "k.csv", []byte("abc"), nil))
	a, err := b.Attributes(ctx, "k.csv")
	testenv.Must(t, err)
	for _, c := range []struct {
		name  string
		size  int64
		since time.Time
	}{
		{"written before the upload", 3, a.ModTime.Add(time.Minute)},
		{"another size", 4, a.ModTime.Add(-time.Minute)},
	} {
		if removed, err := RemoveUnconfirmed(ctx, b, "k.csv", c.size, c.since); removed || err != nil {
			t.Errorf("%s: removed %v, err %v", c.name, removed, err)
		}
		if ok, _ := b.Exists(ctx, "k.csv"); !ok {
			t.Fatalf("%s: the object was deleted", c.name)
		}
	}
	if removed, err := RemoveUnconfirmed(ctx, b, "k.csv", 3, a.ModTime); !removed || err != nil {
		t.Fatalf("the unconfirmed object: removed %v, err %v", removed, err)
	}
	if ok, _ := b.Exists(ctx, "k.csv"); ok {
		t.Fatal("the unconfirmed object is still there")
	}
}
