# Every doctest suite of sigma_tests, with its CTest label.
sigma_add_suite(unit.safetensors unit)
sigma_add_suite(unit.checkpoint unit)
sigma_add_suite(conformance.components conformance)
sigma_add_suite(conformance.tokenizer conformance)
sigma_add_suite(unit.tokenizer unit)
sigma_add_suite(unit.prompt unit)
sigma_add_suite(unit.preprocess unit)
sigma_add_suite(unit.shapes unit)
