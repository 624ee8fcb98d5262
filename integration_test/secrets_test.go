package integration_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
)

// TestSecretsNeverLeak creates integrations with recognisable secrets and
// then looks for them everywhere a secret could escape: every API response
// (gRPC and REST), the server's log output, AUDIT_LOGS, and the bytes of
// every file in the data directory (database, WAL, shm).
func TestSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite")
	secrets := map[string]string{
		"aws":   "AWSSECRET-" + randHex(12),
		"azure": base64.StdEncoding.EncodeToString([]byte("AZUREKEY-" + randHex(12))),
		"gcs":   "GCSPRIVATEKEY-" + randHex(12),
		"sas":   "sig=SASTOKEN" + randHex(12),
	}
	var responses bytes.Buffer
	for _, tr := range transports(s) {
		call := func(rpc, req string) Result {
			t.Helper()
			r := tr.Call(t, rpc, s.AdminKey, req, "")
			if r.Code != codes.OK {
				t.Fatalf("%s over %s: %v %s", rpc, tr.Name(), r.Code, r.Message)
			}
			fmt.Fprintf(&responses, "%v\n", r.Body)
			return r
		}
		n := tr.Name()
		created := []Result{
			call("CreateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"name":"aws_%s","provider":"PROVIDER_S3","destination":"s3://b-%s/p/",
				"credentials":{"awsAccessKey":{"accessKeyId":"AKIA","secretAccessKey":%q}}}}`, n, n, secrets["aws"])),
			call("CreateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"name":"az_%s","provider":"PROVIDER_AZURE_BLOB",
				"destination":"azure://acct%s.blob.core.windows.net/cont/p/",
				"credentials":{"azureSharedKey":{"accountName":"acct%s","accountKey":%q}}}}`, n, n, n, secrets["azure"])),
			call("CreateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"name":"gcs_%s","provider":"PROVIDER_GCS","destination":"gcs://g-%s/p/",
				"credentials":{"gcsServiceAccount":{"jsonKey":%q}}}}`, n, n,
				fmt.Sprintf(`{"type":"service_account","client_email":"x@y.iam.gserviceaccount.com","private_key":%q}`, secrets["gcs"]))),
			call("CreateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"name":"sas_%s","provider":"PROVIDER_AZURE_BLOB",
				"destination":"azure://sas%s.blob.core.windows.net/cont/p/","credentials":{"azureSas":{"token":%q}}}}`, n, n, secrets["sas"])),
		}
		for _, c := range created {
			id := getString(c.Body, "storageIntegration", "id")
			call("GetStorageIntegration", fmt.Sprintf(`{"id":%q}`, id))
			call("GetStorageIntegrationCredentials", fmt.Sprintf(`{"id":%q}`, id))
			// Re-submitting credentials on update must not echo them either.
			call("UpdateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"id":%q,"region":"eu-west-1"},"updateMask":"region"}`, id))
		}
		call("UpdateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"id":%q,"credentials":{"awsAccessKey":{"accessKeyId":"AKIA2","secretAccessKey":%q}}},"updateMask":"credentials"}`,
			getString(created[0].Body, "storageIntegration", "id"), secrets["aws"]))
		call("ListStorageIntegrations", "")
	}
	s.Stop() // flush logs and checkpoint the WAL

	db := s.OpenDB()
	rows, err := db.Query("SELECT event_type, metadata, user_agent, object_id FROM audit_logs")
	if err != nil {
		t.Fatal(err)
	}
	var audit bytes.Buffer
	n := 0
	for rows.Next() {
		var a, b, c, d string
		if err := rows.Scan(&a, &b, &c, &d); err != nil {
			t.Fatal(err)
		}
		n++
		fmt.Fprintln(&audit, a, b, c, d)
	}
	rows.Close()
	if n < 20 || !strings.Contains(audit.String(), "CREATE_STORAGE_INTEGRATION") {
		t.Fatalf("expected the calls in AUDIT_LOGS, found %d rows", n)
	}
	var files []string
	_ = filepath.Walk(s.DataDir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) == 0 {
		t.Fatal("no files in data dir")
	}
	for kind, secret := range secrets {
		if strings.Contains(responses.String(), secret) {
			t.Errorf("%s secret appears in an API response", kind)
		}
		if strings.Contains(s.Logs(), secret) {
			t.Errorf("%s secret appears in the server log", kind)
		}
		if strings.Contains(audit.String(), secret) {
			t.Errorf("%s secret appears in AUDIT_LOGS", kind)
		}
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(raw, []byte(secret)) {
				t.Errorf("%s secret appears in plaintext in %s", kind, filepath.Base(f))
			}
		}
	}
	// The check above must be able to fail: the access key id is stored in
	// the encrypted blob too, but the integration name is plaintext.
	raw, _ := os.ReadFile(filepath.Join(s.DataDir, "auditexport.db"))
	if !bytes.Contains(raw, []byte("aws_grpc")) {
		t.Fatal("sanity: integration name not found in the database file; the file scan is not looking at the data")
	}
}
