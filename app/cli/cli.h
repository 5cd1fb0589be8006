// The `sigma` command line: each subcommand registers itself on the CLI11 app and runs
// from its callback, leaving its exit status in CliState.
#pragma once

#include <CLI/CLI.hpp>

#include <atomic>
#include <map>
#include <vector>
#include <string>

namespace sigma::app {

struct CliState {
  int exit_code = 0;
};

// Set by SIGINT: the run stops after the current step and writes nothing partial.
extern std::atomic<bool> g_interrupted;
inline constexpr int kExitInterrupted = 130;

// "low=50" ... -> {low: 50}; a malformed entry is an error naming `flag`.
std::map<std::string, double> parse_name_values(const std::vector<std::string>& entries, const std::string& flag);

void register_generate(CLI::App& app, CliState& state);   // generate, batch
void register_tools(CLI::App& app, CliState& state);      // info, samplers, preprocess
void register_train(CLI::App& app, CliState& state);      // train, train-hints, eval-shapes
void register_bench(CLI::App& app, CliState& state);      // bench
void register_serve(CLI::App& app, CliState& state);      // serve (app/server/)

}  // namespace sigma::app
