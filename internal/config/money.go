package config

import "github.com/sluice-gateway/sluice/internal/money"

// NanoUSD is an amount of money in billionths of a US dollar; see package money.
type NanoUSD = money.NanoUSD

// NanoPerUSD is the number of NanoUSD in one dollar.
const NanoPerUSD = money.NanoPerUSD

// ParseUSD parses a non-negative decimal amount of dollars exactly; see money.ParseUSD.
func ParseUSD(s string) (NanoUSD, error) { return money.ParseUSD(s) }
