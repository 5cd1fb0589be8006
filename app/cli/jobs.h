// Batch job files (`sigma batch JOBS.jsonl`): one request per line, split across
// processes or machines with no coordinator (--shard i/n, SLURM array tasks, Kubernetes
// indexed Jobs), resumable because every job has a fixed output path that is skipped
// when it exists.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "app/request.h"

namespace sigma::app {

struct Shard {
  int64_t index = 0, count = 1;  // this process takes the jobs with ordinal % count == index
};

// "--shard i/n" (0-based i) wins; else SLURM_ARRAY_TASK_ID (minus SLURM_ARRAY_TASK_MIN) with
// SLURM_ARRAY_TASK_COUNT; else JOB_COMPLETION_INDEX with SIGMA_SHARD_COUNT (or --shard-count).
// Throws std::invalid_argument naming the flag or variable that is malformed.
Shard resolve_shard(const std::string& flag, int64_t count_flag, const std::map<std::string, std::string>& env);
std::map<std::string, std::string> environment();

struct Job {
  int line = 0;              // 1-based line in the file
  int64_t ordinal = 0;       // 0-based among the file's jobs (blank and # lines are not jobs)
  Request request;
  std::string error;         // a line that could not be read fails alone, with this reason
};

// Reads every job; a bad line becomes a Job with `error` set. Throws only if the file is unreadable.
std::vector<Job> read_jobs(const std::string& path, const Request& defaults = {});
// One line of a job file: nullopt for a blank or # line, else the Job (error set when the
// line is not a valid request). Never throws for any bytes (tests/fuzz/job_line).
std::optional<Job> parse_job_line(const std::string& text, int line, int64_t ordinal, const Request& defaults = {});
std::vector<Job> shard_jobs(const std::vector<Job>& jobs, const Shard& shard);

// The files a job writes: its `output` if that names a .png, else
// <out_dir>/<jobs-stem>-<line>.png; batch images 2.. get "-2", "-3" before ".png".
std::vector<std::string> job_outputs(const Job& job, const std::string& out_dir, const std::string& jobs_stem);
// Path of image i (0-based) of n for an exact output file name.
std::string numbered_path(const std::string& path, int64_t i);

}  // namespace sigma::app
