// Command check loads a Compose file the way `docker compose` does, with
// compose-go (the Compose specification's reference loader): interpolation
// from an env file, schema validation, merge keys, normalisation and the
// consistency checks (depends_on, networks, volumes, secrets). It prints one
// line per service, or the loader's error and exits 1.
//
//	go run . ../compose.yaml ../env.example
package main

import (
	"context"
	"fmt"
	"os"
	"sort"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: check COMPOSE_FILE ENV_FILE")
		os.Exit(2)
	}
	opts, err := cli.NewProjectOptions([]string{os.Args[1]},
		cli.WithEnvFiles(os.Args[2]), cli.WithDotEnv, cli.WithName("lambdaml"), cli.WithConsistency(true))
	if err == nil {
		var names []string
		project, loadErr := opts.LoadProject(context.Background())
		if err = loadErr; err == nil {
			for name := range project.Services {
				names = append(names, name)
			}
			sort.Strings(names)
			for _, name := range names {
				fmt.Printf("%s %s\n", name, project.Services[name].Image)
			}
			return
		}
	}
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
