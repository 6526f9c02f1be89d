from mrisr_ray.cli import main

main()
