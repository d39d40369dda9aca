"""Stage augment: the training pool of originals and variants (reads params: augment)."""
from fashionclf import params
from fashionclf.augment import augment, describe, sample_grid
from fashionclf.cli import stage_args, stage_main
from fashionclf.plotting import plot_image_grid


def main():
    args = stage_args(__doc__, "trainval", "out", "samples-png")
    p = params.load("augment")
    table, images = augment(p, args.trainval, args.out)
    plot_image_grid(sample_grid(images, table, p), describe(p), args.samples_png)
    print(f"augment: {len(table)} images from {table['group'].nunique()} sources")


if __name__ == "__main__":
    stage_main(main)
