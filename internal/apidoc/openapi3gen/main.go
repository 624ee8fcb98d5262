// Command openapi3gen writes the served OpenAPI 3.1 document from the
// generated Swagger 2.0 one (run by `make generate`):
//
//	go run ./internal/apidoc/openapi3gen gen/openapi/auditexport.swagger.json gen/openapi/auditexport.openapi.json
package main

import (
	"fmt"
	"os"

	"github.com/auditexport/auditexport/internal/apidoc"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: openapi3gen SWAGGER_IN OPENAPI_OUT")
		os.Exit(2)
	}
	in, err := os.ReadFile(os.Args[1])
	if err == nil {
		var out []byte
		if out, err = apidoc.Convert(in); err == nil {
			err = os.WriteFile(os.Args[2], out, 0o644)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "openapi3gen:", err)
		os.Exit(1)
	}
}
