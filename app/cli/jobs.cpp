#include "app/cli/jobs.h"

#include "models/io/json_text.h"

#include <filesystem>
#include <fstream>
#include <stdexcept>

extern char** environ;

namespace fs = std::filesystem;

namespace sigma::app {
namespace {

int64_t parse_int(const std::string& s, const std::string& what) {
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || s.empty()) throw std::invalid_argument(what + ": '" + s + "' is not a whole number");
  return v;
}

Shard checked(Shard s, const std::string& what) {
  if (s.count < 1) throw std::invalid_argument(what + ": the shard count must be 1 or more");
  if (s.index < 0 || s.index >= s.count)
    throw std::invalid_argument(what + ": shard " + std::to_string(s.index) + " is outside 0.." + std::to_string(s.count - 1));
  return s;
}

}  // namespace

std::map<std::string, std::string> environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    const std::string kv = *e;
    const auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

Shard resolve_shard(const std::string& flag, int64_t count_flag, const std::map<std::string, std::string>& env) {
  auto get = [&](const char* k) -> std::optional<std::string> {
    auto it = env.find(k);
    if (it == env.end() || it->second.empty()) return std::nullopt;
    return it->second;
  };
  if (!flag.empty()) {
    const auto slash = flag.find('/');
    if (slash == std::string::npos) throw std::invalid_argument("--shard: expected i/n (e.g. 0/4), got '" + flag + "'");
    return checked({parse_int(flag.substr(0, slash), "--shard"), parse_int(flag.substr(slash + 1), "--shard")}, "--shard");
  }
  if (auto id = get("SLURM_ARRAY_TASK_ID")) {
    auto count = get("SLURM_ARRAY_TASK_COUNT");
    if (!count) throw std::invalid_argument("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not");
    const int64_t min = get("SLURM_ARRAY_TASK_MIN") ? parse_int(*get("SLURM_ARRAY_TASK_MIN"), "SLURM_ARRAY_TASK_MIN") : 0;
    return checked({parse_int(*id, "SLURM_ARRAY_TASK_ID") - min, parse_int(*count, "SLURM_ARRAY_TASK_COUNT")},
                   "SLURM array task");
  }
  if (!get("JOB_COMPLETION_INDEX") && count_flag > 0)
    throw std::invalid_argument("--shard-count is for Kubernetes indexed Jobs (with JOB_COMPLETION_INDEX set); "
                                "elsewhere use --shard i/n");
  if (auto id = get("JOB_COMPLETION_INDEX")) {
    int64_t count = count_flag;
    if (count <= 0) {
      auto env_count = get("SIGMA_SHARD_COUNT");
      if (!env_count)
        throw std::invalid_argument("JOB_COMPLETION_INDEX is set: give the Job's completions with --shard-count N "
                                    "or SIGMA_SHARD_COUNT");
      count = parse_int(*env_count, "SIGMA_SHARD_COUNT");
    }
    return checked({parse_int(*id, "JOB_COMPLETION_INDEX"), count}, "Kubernetes indexed Job");
  }
  return {};
}

std::optional<Job> parse_job_line(const std::string& text, int line, int64_t ordinal, const Request& defaults) {
  const auto first = text.find_first_not_of(" \t\r");
  if (first == std::string::npos || text[first] == '#') return std::nullopt;
  Job job;
  job.line = line;
  job.ordinal = ordinal;
  job.request = defaults;
  try {
    nlohmann::json j;
    try {
      j = models::parse_json(text, "the line");
    } catch (const models::JsonError& e) {
      throw std::invalid_argument(std::string(e.what()) + "; each line must be one JSON object such as {\"prompt\": \"a red circle\"}");
    }
    merge_json(job.request, j);
    validate(job.request);
  } catch (const std::exception& e) {
    job.error = e.what();
  }
  return job;
}

std::vector<Job> read_jobs(const std::string& path, const Request& defaults) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument(path + ": cannot read the job file");
  std::vector<Job> jobs;
  std::string text;
  int line = 0;
  int64_t ordinal = 0;
  while (std::getline(in, text)) {
    ++line;
    if (auto job = parse_job_line(text, line, ordinal, defaults)) {
      ++ordinal;
      jobs.push_back(std::move(*job));
    }
  }
  return jobs;
}

std::vector<Job> shard_jobs(const std::vector<Job>& jobs, const Shard& shard) {
  std::vector<Job> mine;
  for (const auto& j : jobs)
    if (j.ordinal % shard.count == shard.index) mine.push_back(j);
  return mine;
}

std::string numbered_path(const std::string& path, int64_t i) {
  if (i == 0) return path;
  const fs::path p(path);
  return (p.parent_path() / (p.stem().string() + "-" + std::to_string(i + 1) + p.extension().string())).string();
}

std::vector<std::string> job_outputs(const Job& job, const std::string& out_dir, const std::string& jobs_stem) {
  std::string first = job.request.output;
  if (first.empty() || fs::path(first).extension() != ".png") {
    const std::string dir = first.empty() ? out_dir : first;
    char name[32];
    std::snprintf(name, sizeof name, "-%05d.png", job.line);
    first = (fs::path(dir) / (jobs_stem + name)).string();
  }
  std::vector<std::string> out;
  const int64_t n = job.request.batch_size * job.request.batch_count;
  for (int64_t i = 0; i < n; ++i) out.push_back(numbered_path(first, i));
  return out;
}

}  // namespace sigma::app
