package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/hike-vpn/hike/internal/config"
	"github.com/hike-vpn/hike/internal/daemon"
)

func newServeCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "serve -c FILE",
		Short: "Run the IKEv2 daemon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(file)
			if err != nil {
				return err
			}
			log := newLogger(cfg)
			d, err := daemon.New(cfg, daemon.Options{Logger: log})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log.Info("hike starting", "version", version, "config", file)
			return d.Run(ctx)
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "/etc/hike/hike.yaml", "configuration file")
	return cmd
}

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with configuration files"}
	var file string
	check := &cobra.Command{
		Use:   "check -c FILE",
		Short: "Validate a configuration file and exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(file)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK (%d connections)\n", file, len(cfg.Connections))
			return nil
		},
	}
	check.Flags().StringVarP(&file, "config", "c", "/etc/hike/hike.yaml", "configuration file")
	cmd.AddCommand(check)
	return cmd
}

func newLogger(cfg *config.Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.Log.Level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
