package integration_test

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
)

// TestIntegrationRedirectNeedsCredentials: stored credentials go only
// where they were given for. Changing an integration's endpoint or
// destination without sending its credentials again is INVALID_ARGUMENT
// naming storage_integration.credentials and changes nothing; with them it
// works; changes that move nothing (name, region, the same destination)
// need none, and LOCAL (no credentials) may move its destination. The
// provider cannot change at all. gRPC and REST.
func TestIntegrationRedirectNeedsCredentials(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite")
	local := "file://" + s.LocalDir("", "redirect")
	const s3Creds = `"credentials":{"awsAccessKey":{"accessKeyId":"AKIAREDIRECT","secretAccessKey":"redirect-secret"}}`
	const sasCreds = `"credentials":{"azureSas":{"token":"sv=2022-11-02&ss=b&srt=co&sp=rwdlac&se=2099-01-01T00:00:00Z&sig=c2lnbmF0dXJl"}}`
	for _, tr := range transports(s) {
		t.Run(tr.Name(), func(t *testing.T) {
			call := func(rpc, req string) Result { return tr.Call(t, rpc, s.AdminKey, req, "") }
			create := func(body string) string {
				t.Helper()
				r := call("CreateStorageIntegration", `{"storageIntegration":{`+body+`}}`)
				if r.Code != codes.OK {
					t.Fatalf("create %s: %v %s", body, r.Code, r.Message)
				}
				return getString(r.Body, "storageIntegration", "id")
			}
			n := map[string]int{}
			name := func(p string) string { n[p]++; return fmt.Sprintf("%s%s%d", p, tr.Name(), n[p]) }
			s3 := func() string {
				return create(fmt.Sprintf(`"name":%q,"provider":"PROVIDER_S3","destination":"s3://exports/audit/","region":"us-east-1",
					"endpoint":"http://127.0.0.1:9000",%s`, name("s3"), s3Creds))
			}
			azure := func() string {
				return create(fmt.Sprintf(`"name":%q,"provider":"PROVIDER_AZURE_BLOB","destination":"azure://acct.blob.core.windows.net/cont/p/",
					"endpoint":"http://127.0.0.1:10000/acct/",%s`, name("az"), sasCreds))
			}
			loc := func() string {
				return create(fmt.Sprintf(`"name":%q,"provider":"PROVIDER_LOCAL","destination":%q`, name("local"), local+"/a/"))
			}
			for _, c := range []struct {
				name, fields, mask string
				integ              func() string
				want               codes.Code
				field              string
			}{
				{"s3 endpoint", `"endpoint":"http://127.0.0.2:9000"`, "endpoint", s3, codes.InvalidArgument, "storage_integration.credentials"},
				{"s3 destination bucket", `"destination":"s3://attacker/audit/"`, "destination", s3, codes.InvalidArgument, "storage_integration.credentials"},
				{"s3 destination prefix", `"destination":"s3://exports/other/"`, "destination", s3, codes.InvalidArgument, "storage_integration.credentials"},
				{"azure endpoint", `"endpoint":"http://127.0.0.3:10000/acct/"`, "endpoint", azure, codes.InvalidArgument, "storage_integration.credentials"},
				{"azure account", `"destination":"azure://other.blob.core.windows.net/cont/p/"`, "destination", azure, codes.InvalidArgument, "storage_integration.credentials"},
				{"s3 endpoint with credentials", `"endpoint":"http://127.0.0.2:9000",` + s3Creds, "endpoint,credentials", s3, codes.OK, ""},
				{"s3 destination with credentials", `"destination":"s3://other/audit/",` + s3Creds, "destination,credentials", s3, codes.OK, ""},
				{"azure endpoint with credentials", `"endpoint":"http://127.0.0.3:10000/acct/",` + sasCreds, "endpoint,credentials", azure, codes.OK, ""},
				{"s3 same destination", `"destination":"s3://exports/audit/","endpoint":"http://127.0.0.1:9000"`, "destination,endpoint", s3, codes.OK, ""},
				{"s3 region", `"region":"eu-west-1"`, "region", s3, codes.OK, ""},
				{"s3 name", fmt.Sprintf(`"name":%q`, name("renamed")), "name", s3, codes.OK, ""},
				{"local destination", fmt.Sprintf(`"destination":%q`, local+"/b/"), "destination", loc, codes.OK, ""},
				{"s3 provider", `"provider":"PROVIDER_GCS"`, "provider", s3, codes.InvalidArgument, "storage_integration.provider"},
			} {
				t.Run(c.name, func(t *testing.T) {
					id := c.integ()
					before := call("GetStorageIntegration", fmt.Sprintf(`{"id":%q}`, id)).Body
					r := call("UpdateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"id":%q,%s},"updateMask":%q}`, id, c.fields, c.mask))
					if r.Code != c.want || (c.field != "" && !slices.Contains(r.Violations, c.field)) {
						t.Fatalf("update %s: %v %v (%s), want %v naming %q", c.fields, r.Code, r.Violations, r.Message, c.want, c.field)
					}
					after := call("GetStorageIntegration", fmt.Sprintf(`{"id":%q}`, id)).Body
					if c.want != codes.OK {
						for _, f := range []string{"destination", "endpoint", "provider", "updateTime"} {
							if getString(before, "storageIntegration", f) != getString(after, "storageIntegration", f) {
								t.Errorf("refused update changed %s: %v -> %v", f, before, after)
							}
						}
					}
				})
			}
		})
	}
}
