// Command hike is a highly available IKEv2/IPsec VPN concentrator.
//
// This package holds command-line entry points only: it parses flags and
// hands over to the internal packages, which hold all protocol logic.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at link time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "hike:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "hike",
		Short: "hike is a highly available IKEv2/IPsec VPN concentrator",
		Long: `hike is an IKEv2/IPsec VPN concentrator built to run as a cluster: a node
that takes over an IKE SA resynchronises its message IDs and ESP replay
counters with the peer through RFC 6311 instead of replicating every DPD.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print hike's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "hike", version)
		},
	})
	root.AddCommand(newServeCmd(), newConfigCmd())
	root.AddCommand(newSACmd(), newClusterCmd(), newWitnessCmd())
	root.AddCommand(newLabCmd())
	root.AddCommand(newLoadCmd())
	return root
}
