package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/auditexport/auditexport/internal/app"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/secrets"
)

// keysFlags locate the database and the master key file, as `serve` does.
type keysFlags struct {
	dbFlags
	MasterKeyFile string `name:"master-key-file" env:"AUDITEXPORT_MASTER_KEY_FILE" help:"Master key file (default <data-dir>/master.key)."`
}

func (f keysFlags) keyFile() string {
	if f.MasterKeyFile != "" {
		return f.MasterKeyFile
	}
	return filepath.Join(f.DataDir, "master.key")
}

// load reads the key file (never creating one) and opens the database.
func (f keysFlags) load(ctx context.Context) (*secrets.Keyring, *db.DB, error) {
	keys, err := secrets.Load(f.keyFile())
	if err != nil {
		return nil, nil, err
	}
	d, err := f.open(ctx)
	return keys, d, err
}

type keysAddCmd struct {
	keysFlags
}

func (c *keysAddCmd) Run() error {
	kid, err := secrets.AddKey(c.keyFile())
	if err != nil {
		return err
	}
	fmt.Printf("added master key %s at the top of %s: it encrypts new credentials once servers restart;\n"+
		"copy the file to every replica, restart them, then run `auditexport keys rotate`.\n", kid, c.keyFile())
	return nil
}

type keysRotateCmd struct {
	keysFlags
	NewKey bool `name:"new-key" help:"First add a fresh key at the top of the key file (like 'keys add')."`
}

func (c *keysRotateCmd) Run(ctx context.Context) error {
	if c.NewKey {
		kid, err := secrets.AddKey(c.keyFile())
		if err != nil {
			return err
		}
		fmt.Printf("added master key %s to %s\n", kid, c.keyFile())
	}
	keys, d, err := c.load(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	res, err := app.ReencryptCredentials(ctx, d, keys)
	if err != nil {
		return err
	}
	fmt.Printf("re-encrypted %d of %d stored credentials under master key %s (%d were already under it)\n",
		res.Reencrypted, res.Total, res.KeyID, res.Total-res.Reencrypted-len(res.Failed))
	if len(res.Failed) > 0 {
		return fmt.Errorf("%d stored credentials could not be decrypted with %s (their key id is not in the file, or they were tampered with): %s",
			len(res.Failed), c.keyFile(), strings.Join(res.Failed, ", "))
	}
	return nil
}

type keysStatusCmd struct {
	keysFlags
}

func (c *keysStatusCmd) Run(ctx context.Context) error {
	keys, d, err := c.load(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	usage, err := app.KeyUsage(ctx, d)
	if err != nil {
		return err
	}
	listed := map[string]bool{}
	for i, kid := range keys.KeyIDs() {
		listed[kid] = true
		role := "decrypts"
		if i == 0 {
			role = "active (encrypts new credentials)"
		}
		fmt.Printf("%-12s %6d credentials  %s\n", kid, usage[kid], role)
	}
	var missing []string
	for kid := range usage {
		if !listed[kid] {
			missing = append(missing, kid)
		}
	}
	sort.Strings(missing)
	for _, kid := range missing {
		fmt.Printf("%-12s %6d credentials  NOT IN %s: these cannot be decrypted\n", kid, usage[kid], c.keyFile())
	}
	if len(missing) > 0 {
		return fmt.Errorf("stored credentials use key ids missing from %s: %s", c.keyFile(), strings.Join(missing, ", "))
	}
	return nil
}
