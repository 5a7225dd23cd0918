# The grading fixtures are submissions for `t5edu grade` to run (some deliberately broken), not book pages.
collect_ignore_glob = ["fixtures/*"]
