"""The last step of the kit: evaluator results -> checked submission file -> local leaderboard.

`python -m submission make|validate|score`; `submission.metrics` holds the ranking metrics the
rest of the kit reports. No PaddlePaddle here: scoring must run anywhere the JSON files are.
"""
