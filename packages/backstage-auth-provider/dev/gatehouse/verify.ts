export * from '../../../../src/verify/index.ts';
