// Command tf-provider builds the Terraform tests' stand-in provider into the
// cache (testenv.BuildTerraformProvider) and prints its CLI configuration's
// path.
package main

import (
	"fmt"
	"os"

	"github.com/prox-ops/drover/internal/testenv"
)

func main() {
	rc, err := testenv.BuildTerraformProvider("internal/terraform/testdata/provider")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tf-provider:", err)
		os.Exit(1)
	}
	fmt.Println(rc)
}
