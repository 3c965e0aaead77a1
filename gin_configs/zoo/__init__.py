"""The attention zoo (sweeps/attention_zoo.gin): its one model body (model.gin) and each task at the length the zoo trains it (<task>.gin)."""
