// The public face of samplers/ in one include: callers (app/, tests/) need the denoiser
// vocabulary, the model sampling, σ lists, guidance, noise and the registry together.
#pragma once

#include "samplers/brownian.h"
#include "samplers/guidance.h"
#include "samplers/model_sampling.h"
#include "samplers/noise.h"
#include "samplers/registry.h"
#include "samplers/schedules.h"
#include "samplers/solvers.h"
#include "samplers/types.h"
